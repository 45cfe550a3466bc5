"""Labelled results: the engine's output as an ``xarray.DataTree`` (DESIGN §3), and its I/O.

Examples
--------
>>> tree = cw.Explainer(bundle).explain(x, "disk")  # doctest: +SKIP
>>> tree["layers/features.28"].neuron_relevance.sel(kind="contrast")  # doctest: +SKIP
>>> decode_attrs(tree["layers/features.28"].attrs)["conservation"]  # doctest: +SKIP
{'target': 1.0000001, 'dual': 0.9999999, 'contrast': None}
>>> tree.to_netcdf("result.nc")  # or tree.to_zarr("result.zarr")  # doctest: +SKIP
>>> open_tree("result.nc").identical(tree)  # doctest: +SKIP
True

Attributes that netCDF cannot hold (None, bools, dicts, nested lists) are stored as JSON text
with the prefix ``"json:"``; :func:`decode_attrs` returns the Python values.
"""

from clrp_widgets.results.attrs import decode_attr, decode_attrs, encode_attr, encode_attrs
from clrp_widgets.results.io import open_tree
from clrp_widgets.results.tree import build_tree, module_name, node_name

__all__ = [
    "build_tree",
    "decode_attr",
    "decode_attrs",
    "encode_attr",
    "encode_attrs",
    "module_name",
    "node_name",
    "open_tree",
]
