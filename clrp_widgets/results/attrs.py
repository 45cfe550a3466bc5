"""Attribute codec: every attribute of a result tree is something netCDF can store.

netCDF attributes hold strings, numbers and flat arrays, but not ``None``, booleans, dicts or
nested sequences, and a one-element list comes back as a scalar. So a result tree keeps ``str``,
``int`` and ``float`` attributes as they are and stores every other value as JSON text with the
prefix ``"json:"`` (tuples become lists). The tree therefore writes with ``to_netcdf`` and
``to_zarr`` unchanged and reads back identical; :func:`decode_attrs` gives the Python values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

JSON_PREFIX = "json:"
MAX_DEPTH = 32  # nesting of lists/dicts in one attribute (result trees use at most 3)
_SCALARS = (str, int, float, bool, np.generic)


def check_attr_value(value: Any) -> str | None:
    """Why ``value`` is not a valid result-tree attribute, or None if it is.

    Valid: None, str, int, float, bool (numpy scalars and 1-D arrays too), and lists and dicts with
    str keys of them, nested at most :data:`MAX_DEPTH` deep. Walks iteratively, so no input can
    exhaust the stack.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if item is None or isinstance(item, _SCALARS):
            continue
        if depth >= MAX_DEPTH:
            return f"it is nested more than {MAX_DEPTH} levels deep"
        if isinstance(item, np.ndarray):
            if item.ndim > 1 or item.dtype.kind not in "biufUS":
                return f"it holds a {item.ndim}-D {item.dtype} array"
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, Mapping):
            if not all(isinstance(k, str) for k in item):
                return "it holds a mapping with non-string keys"
            stack.extend((v, depth + 1) for v in item.values())
        else:
            return f"it holds a {type(item).__name__}"
    return None


def to_python(value: Any) -> Any:
    """Numpy scalars and arrays as Python values, recursively through lists, tuples and dicts."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): to_python(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_python(v) for v in value]
    return value


def encode_attr(value: Any) -> str | int | float:
    """Encode one attribute value so that netCDF and zarr store it losslessly.

    Parameters
    ----------
    value : Any
        ``str``, ``int``, ``float``, ``None``, ``bool``, or lists, tuples and dicts of them
        (numpy scalars and arrays are accepted as their Python equivalents).

    Returns
    -------
    str or int or float
        The value itself when it is a plain ``str``, ``int`` or ``float``, else ``"json:<text>"``.
    """
    value = to_python(value)
    plain_number = isinstance(value, int | float) and not isinstance(value, bool)
    if plain_number or (isinstance(value, str) and not value.startswith(JSON_PREFIX)):
        return value
    try:
        return JSON_PREFIX + json.dumps(value, allow_nan=True)
    except TypeError as err:
        raise TypeError(
            f"attribute value {value!r} cannot be stored in a result tree; use str, int, float, "
            "None, bool, or lists/dicts of them."
        ) from err


def decode_attr(value: Any) -> Any:
    """Inverse of :func:`encode_attr` (also accepts the numpy types netCDF readers return)."""
    value = to_python(value)
    if isinstance(value, str) and value.startswith(JSON_PREFIX):
        return json.loads(value[len(JSON_PREFIX) :])
    return value


def encode_attrs(attrs: Mapping[str, Any]) -> dict[str, str | int | float]:
    """Encode every value of ``attrs`` with :func:`encode_attr`."""
    return {key: encode_attr(value) for key, value in attrs.items()}


def decode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Decode every value of ``attrs`` with :func:`decode_attr`.

    Examples
    --------
    >>> decode_attrs(tree["layers/features.28"].attrs)["conservation"]  # doctest: +SKIP
    {'target': 1.0000001, 'dual': 0.9999998, 'contrast': None}
    """
    return {key: decode_attr(value) for key, value in attrs.items()}
