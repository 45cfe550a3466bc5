"""Read result trees back from netCDF or zarr, exactly as they were built."""

from __future__ import annotations

import io
import os
from pathlib import Path

import xarray as xr

from clrp_widgets.results.attrs import decode_attrs, to_python
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
        store the decoded values.

    Returns
    -------
    xarray.DataTree
    """
    source = io.BytesIO(bytes(path)) if isinstance(path, bytes | memoryview) else Path(path)
    with xr.open_datatree(source, engine=engine or _engine_for(source)) as opened:
        opened.load()
        nodes = {node.path: node.to_dataset(inherit=False) for node in opened.subtree}
    order = decode_attrs(nodes["/"].attrs).get("layer_order", [])
    layer_paths = [f"/layers/{node_name(name)}" for name in order]
    layer_paths = [p for p in layer_paths if p in nodes]
    ordered = {p: nodes[p] for p in [*[p for p in nodes if p not in layer_paths], *layer_paths]}
    for dataset in ordered.values():
        dataset.attrs = decode_attrs(dataset.attrs) if decode else to_python(dataset.attrs)
    return xr.DataTree.from_dict(ordered)
