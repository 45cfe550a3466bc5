"""The attribute codec: everything netCDF cannot hold is stored reversibly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from clrp_widgets.results import decode_attr, decode_attrs, encode_attr, encode_attrs

VALUES = {
    "string": "paper",
    "integer": 3,
    "real": 2.5,
    "negative": -2.1179,
    "none": None,
    "true": True,
    "false": False,
    "dict": {"target": 1.0, "contrast": None},
    "bounds": [[-2.1, -2.0, -1.8], [2.2, 2.4, 2.6]],
    "one": [1.0],
    "empty": [],
    "names": ["features.0", "classifier.6"],
    "lookalike": "json:not json",
    "blank": "",
}


@pytest.mark.parametrize("key", list(VALUES))
def test_encode_decode_round_trip(key: str) -> None:
    encoded = encode_attr(VALUES[key])
    assert type(encoded) in (str, int, float)
    assert decode_attr(encoded) == VALUES[key]


def test_plain_values_stay_readable() -> None:
    assert encode_attr("paper") == "paper" and encode_attr(3) == 3 and encode_attr(2.5) == 2.5
    assert encode_attr(None) == "json:null" and encode_attr(True) == "json:true"
    assert encode_attr(np.float32(0.5)) == 0.5 and type(encode_attr(np.int64(4))) is int


def test_tuples_become_lists_and_nan_survives() -> None:
    assert decode_attr(encode_attr(((0.0, 0.1), (1.0, 0.9)))) == [[0.0, 0.1], [1.0, 0.9]]
    assert math.isnan(decode_attr(encode_attr([float("nan")]))[0])
    assert decode_attr(encode_attr(np.array([1.0, 2.0]))) == [1.0, 2.0]


def test_unstorable_value_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot be stored"):
        encode_attr(object())


@pytest.mark.parametrize("engine", ["h5netcdf", "zarr"])
def test_every_value_survives_the_file(tmp_path, engine: str) -> None:
    tree = xr.DataTree(xr.Dataset(attrs=encode_attrs(VALUES)))
    path = tmp_path / ("t.nc" if engine == "h5netcdf" else "t.zarr")
    if engine == "h5netcdf":
        tree.to_netcdf(path, engine=engine)
    else:
        tree.to_zarr(path)
    with xr.open_datatree(path, engine=engine) as back:
        assert decode_attrs(back.attrs) == VALUES
