"""Lossless round trip of result trees through netCDF (h5netcdf) and zarr."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from conftest import LAYER_ORDER, make_output

from clrp_widgets.results import build_tree, decode_attrs, open_tree

ATTRS = {
    "method": "clrp",
    "rules": {"Conv2d": "zplus", "features.0": "zbox"},
    "contrast": 7,
    "dual_seed": None,
    "input_bounds": [[-2.1, -2.0, -1.8], [2.2, 2.4, 2.6]],
    "model": "tiny",
    "version": "0.1.0",
    "canonized": True,
}


def save(tree: xr.DataTree, path, engine: str) -> None:
    with warnings.catch_warnings():  # zarr 3: fixed-width strings have no v3 spec yet
        warnings.simplefilter("ignore")
        if engine == "netcdf":
            tree.to_netcdf(path, engine="h5netcdf")
        else:
            tree.to_zarr(path)


def assert_same(back: xr.DataTree, tree: xr.DataTree) -> None:
    assert back.identical(tree)
    assert [n.path for n in back.subtree] == [n.path for n in tree.subtree]
    for got, want in zip(back.subtree, tree.subtree, strict=True):
        assert got.attrs == want.attrs
        assert all(type(got.attrs[k]) is type(v) for k, v in want.attrs.items())
        for name, var in want.to_dataset(inherit=False).variables.items():
            assert got[name].dtype == var.dtype, (got.path, name)
            np.testing.assert_array_equal(got[name].values, var.values)


@pytest.mark.parametrize("engine", ["netcdf", "zarr"])
@pytest.mark.parametrize("kinds", [("target", "dual", "contrast"), ("target",), ("contrast",)])
def test_round_trip_is_lossless(tmp_path, engine: str, kinds) -> None:
    tree = build_tree(make_output(kinds), class_names=list("abcd"), attrs=ATTRS)
    path = tmp_path / ("result.nc" if engine == "netcdf" else "result.zarr")
    save(tree, path, engine)
    back = open_tree(path)
    assert_same(back, tree)
    assert list(back["layers"].children) == LAYER_ORDER
    assert decode_attrs(back.attrs)["rules"] == ATTRS["rules"]


def test_in_memory_netcdf_bytes(tmp_path) -> None:
    tree = build_tree(make_output(), attrs=ATTRS)
    assert_same(open_tree(tree.to_netcdf()), tree)


def test_zarr_store_without_suffix_is_detected(tmp_path) -> None:
    tree = build_tree(make_output(), attrs=ATTRS)
    save(tree, tmp_path / "store", "zarr")
    assert_same(open_tree(tmp_path / "store"), tree)


def test_plain_xarray_reader_gives_the_same_tree(tmp_path) -> None:
    tree = build_tree(make_output(), attrs=ATTRS)
    save(tree, tmp_path / "r.nc", "netcdf")
    with xr.open_datatree(tmp_path / "r.nc", engine="h5netcdf") as back:
        assert back.identical(tree)
        assert back["layers/features.10"].relevance.dims == ("kind", "sample", "channel", "y", "x")


def test_decode_restores_python_values(tmp_path) -> None:
    tree = build_tree(make_output(), attrs=ATTRS)
    save(tree, tmp_path / "r.nc", "netcdf")
    back = open_tree(tmp_path / "r.nc", decode=True)
    assert back.attrs["dual_seed"] is None and back.attrs["canonized"] is True
    assert back.attrs["input_bounds"] == ATTRS["input_bounds"]
    assert back.attrs["contrast"] == 7
    assert back["layers/features.0"].attrs["conservation"]["contrast"] is None
    assert back["input"].attrs["conservation"]["target"] == pytest.approx(1, rel=1e-5)


def test_file_is_closed_after_open_tree(tmp_path) -> None:
    path = tmp_path / "r.nc"
    save(build_tree(make_output()), path, "netcdf")
    open_tree(path)
    path.unlink()  # would fail on some platforms if still open; then rewrite the same path
    save(build_tree(make_output()), path, "netcdf")
    assert open_tree(path)["input"].relevance.shape == (3, 2, 3, 6, 6)


# ----- hostile attributes (issue 10): a clear error, never RecursionError/TypeError


def _hostile(tmp_path, **attrs) -> object:
    tree = build_tree(make_output(), attrs=ATTRS)
    tree.attrs.update(attrs)
    path = tmp_path / "hostile.nc"
    save(tree, path, "netcdf")
    return path


DEEP = "json:" + "[" * 50_000 + "]" * 50_000


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (DEEP, "nested"),
        ("json:" + "[" * 100 + "]" * 100, "nested"),
        ("json:{not json", "not valid JSON"),
    ],
)
def test_hostile_attribute_gives_a_clear_error_when_decoding(tmp_path, value, problem) -> None:
    from clrp_widgets.engine.errors import ResultFileError

    path = _hostile(tmp_path, note=value)
    with pytest.raises(ResultFileError, match=f"(?s)'note'.*hostile.nc.*{problem}"):
        open_tree(path, decode=True)


@pytest.mark.parametrize("value", [DEEP, "json:{not json", "json:5", 'json:["a", 1, null]'])
def test_decode_false_means_raw(tmp_path, value) -> None:
    path = _hostile(tmp_path, note=value, layer_order=value)
    back = open_tree(path)
    assert back.attrs["note"] == value and back.attrs["layer_order"] == value
    assert sorted(back["layers"].children) == sorted(LAYER_ORDER)  # the file's order is kept


def test_layer_order_of_the_wrong_type_is_ignored_when_decoding(tmp_path) -> None:
    back = open_tree(_hostile(tmp_path, layer_order="json:5"), decode=True)
    assert back.attrs["layer_order"] == 5
    assert sorted(back["layers"].children) == sorted(LAYER_ORDER)


def test_hostile_zarr_attributes_give_a_clear_error(tmp_path) -> None:
    import json

    from clrp_widgets.engine.errors import ResultFileError

    tree = build_tree(make_output(), attrs=ATTRS)
    path = tmp_path / "r.zarr"
    save(tree, path, "zarr")
    meta_path = path / "zarr.json"
    meta = json.loads(meta_path.read_text())
    deep: object = 1
    for _ in range(200):
        deep = [deep]
    meta["attributes"]["note"] = deep
    meta["attributes"]["layer_order"] = {"a": 1}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ResultFileError, match=r"'note'.*nested"):
        open_tree(path)
