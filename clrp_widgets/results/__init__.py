"""Labelled results: the engine's output as an ``xarray.DataTree`` (DESIGN §3), and its I/O."""

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
