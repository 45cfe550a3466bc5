"""Read result trees back from netCDF or zarr, exactly as they were built."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xarray as xr

from clrp_widgets.engine.errors import ResultFileError
from clrp_widgets.results.attrs import JSON_PREFIX, MAX_DEPTH, check_attr_value, to_python
from clrp_widgets.results.tree import node_name


def _engine_for(path: Path | io.BytesIO) -> str:
    if isinstance(path, io.BytesIO):
        return "h5netcdf"
    is_zarr = path.suffix == ".zarr" or (path / "zarr.json").exists() or (path / ".zgroup").exists()
    return "zarr" if is_zarr else "h5netcdf"


def open_tree(
    path: str | os.PathLike[str] | bytes | memoryview,
    *,
    engine: str | None = None,
    decode: bool = False,
) -> xr.DataTree:
    """Open a result tree saved with ``tree.to_netcdf(path)`` or ``tree.to_zarr(path)``.

    The data are loaded into memory and the file is closed. Attributes come back as the Python
    types they were built with (netCDF readers return numpy scalars) and the ``/layers`` nodes in
    forward order (netCDF lists groups alphabetically), so the result is ``identical`` to the tree
    that was saved.

    Parameters
    ----------
    path : str, os.PathLike, bytes or memoryview
        A netCDF file or a zarr store (a ``.zarr`` folder or one holding zarr metadata), or
        the netCDF bytes that ``tree.to_netcdf()`` returns without a path.
    engine : str, optional
        xarray backend; default ``"zarr"`` for zarr stores, else ``"h5netcdf"``.
    decode : bool
        Also decode ``"json:"`` attributes (``None``, bools, dicts, nested lists) with
        :func:`clrp_widgets.results.decode_attrs`. Such a tree is for reading: netCDF cannot
        store the decoded values. False (default): attributes come back raw, as stored.

    Returns
    -------
    xarray.DataTree

    Raises
    ------
    ResultFileError
        An attribute that is not a result-tree value (nested more than
        :data:`~clrp_widgets.results.attrs.MAX_DEPTH` levels, of another type, or, with
        ``decode``, not valid JSON), naming the attribute, the node and the file.
    """
    source = io.BytesIO(bytes(path)) if isinstance(path, bytes | memoryview) else Path(path)
    with xr.open_datatree(source, engine=engine or _engine_for(source)) as opened:
        opened.load()
        nodes = {node.path: node.to_dataset(inherit=False) for node in opened.subtree}
    label = "the netCDF bytes" if isinstance(source, io.BytesIO) else str(source)
    for node_path, dataset in nodes.items():
        dataset.attrs = _checked_attrs(dataset.attrs, node_path, label, decode)
    layer_paths = [f"/layers/{node_name(name)}" for name in _layer_order(nodes["/"].attrs)]
    layer_paths = [p for p in layer_paths if p in nodes]
    ordered = {p: nodes[p] for p in [*[p for p in nodes if p not in layer_paths], *layer_paths]}
    return xr.DataTree.from_dict(ordered)


def _checked_attrs(attrs: Mapping[str, Any], node: str, label: str, decode: bool) -> dict[str, Any]:
    """``attrs`` as Python values (``"json:"`` ones decoded if ``decode``), each one checked."""
    out = {}
    for key, value in attrs.items():
        problem = check_attr_value(value)
        if problem is None:
            value = to_python(value)
            if decode and isinstance(value, str) and value.startswith(JSON_PREFIX):
                value, problem = _json_value(value)
        if problem is not None:
            raise ResultFileError(
                f"attribute {key!r} of node {node!r} in {label} cannot be read: {problem}. The "
                "file is damaged or was not written by clrp_widgets; open it with decode=False "
                "to see the raw attributes, or save the result tree again."
            )
        out[key] = value
    return out


def _json_value(text: str) -> tuple[Any, str | None]:
    try:
        value = json.loads(text[len(JSON_PREFIX) :])
    except RecursionError:
        return None, f"it is nested more than {MAX_DEPTH} levels deep"
    except ValueError as err:
        return None, f"it is not valid JSON ({err})"
    return value, check_attr_value(value)


def _layer_order(root_attrs: Mapping[str, Any]) -> list[str]:
    """The saved forward order of the layers; empty (keep the file's order) if unusable."""
    value = root_attrs.get("layer_order")
    if isinstance(value, str) and value.startswith(JSON_PREFIX):
        value, problem = _json_value(value)
        if problem is not None:
            return []
    if isinstance(value, list) and all(isinstance(name, str) for name in value):
        return value
    return []
