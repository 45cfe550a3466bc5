"""cw.evaluate on a few scenes: shape of the result, agreement with direct metric calls."""

import json

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import clrp_widgets as cw
from clrp_widgets.engine.baselines import gradcam, gradient
from clrp_widgets.engine.errors import ConfigError, InputError
from clrp_widgets.metrics import Ablation, ClassSensitivity, PointingGame, RegionPerturbation
from clrp_widgets.metrics.data import EvalData
from clrp_widgets.metrics.report import format_markdown, format_table, scores_dict

METRICS = ["pointing_game", "strict_pointing_game", "ablation", "class_sensitivity"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 16 * 16, 8),
    ).eval()  # fmt: skip
    return model


@pytest.fixture(scope="module")
def scenes():
    return cw.scenes(6, seed=1)


def run(model, data, **kw):
    kw = {"methods": ["gradient", "gradcam"], "metrics": METRICS, "progress": False, **kw}
    return cw.evaluate(model, data, input_bounds=(0.0, 1.0), **kw)


def test_result_layout(tiny, scenes):
    ds = run(tiny, scenes)
    present = scenes.labels.values.sum(1).astype(int)
    assert ds.sizes["item"] == present.sum()
    assert ds.sizes["pair"] == sum(k * (k - 1) // 2 for k in present)
    assert ds["score"].dims == ("method", "metric")
    assert ds["method"].values.tolist() == ["gradient", "gradcam"]
    assert ds["metric"].values.tolist() == METRICS
    assert ds["higher_is_better"].values.tolist() == [True, True, True, False]
    assert ds["pointing_game"].dims == ("method", "item")
    assert ds["class_sensitivity"].dims == ("method", "pair")
    # the items are exactly the present classes, image by image
    for i in range(len(scenes)):
        got = ds["target"].values[ds["image"].values == i]
        assert got.tolist() == np.flatnonzero(scenes.labels.values[i]).tolist()
    assert (ds["target_name"].values == np.asarray(scenes.class_names)[ds["target"].values]).all()
    assert ds["count"].sel(metric="pointing_game").values.tolist() == [ds.sizes["item"]] * 2
    assert (ds["class_a"] != ds["class_b"]).all()


def test_values_agree_with_direct_metric_calls(tiny, scenes):
    rp = RegionPerturbation(steps=4)
    ds = run(tiny, scenes[:4], metrics=[*METRICS, rp])
    data = EvalData.from_scenes(scenes[:4])
    img, tgt = ds["image"].values, ds["target"].values
    x = data.images[torch.as_tensor(img)]
    maps = gradient(tiny, x, torch.as_tensor(tgt)).abs().amax(1)
    regions = [data.region(i, c) for i, c in zip(img, tgt, strict=True)]
    sel = {"method": "gradient"}
    np.testing.assert_allclose(ds["pointing_game"].sel(sel), PointingGame()(maps, regions))
    mean = data.images.mean(dim=(0, 2, 3))
    np.testing.assert_allclose(ds["ablation"].sel(sel), Ablation()(tiny, x, maps, tgt, mean))
    curves = RegionPerturbation(steps=4).curves(tiny, x, maps, tgt, mean)
    np.testing.assert_allclose(ds["region_perturbation_curve"].sel(sel), curves)
    cam = gradcam(tiny, x, torch.as_tensor(tgt))
    pi = ds["pair_image"].values
    ca, cb = ds["class_a"].values, ds["class_b"].values
    a = [np.flatnonzero((img == i) & (tgt == c))[0] for i, c in zip(pi, ca, strict=True)]
    b = [np.flatnonzero((img == i) & (tgt == c))[0] for i, c in zip(pi, cb, strict=True)]
    np.testing.assert_allclose(
        ds["class_sensitivity"].sel({"method": "gradcam"}), ClassSensitivity()(cam[a], cam[b])
    )
    expected = PointingGame().aggregate(ds["pointing_game"].sel(sel).values)
    assert float(ds["score"].sel({**sel, "metric": "pointing_game"})) == expected


def test_deterministic_and_batch_size_invariant(tiny, scenes):
    kw = {"methods": ["gradient"], "metrics": ["pointing_game", "ablation", "class_sensitivity"]}
    a = run(tiny, scenes[:4], batch_size=3, **kw)
    b = run(tiny, scenes[:4], batch_size=1, **kw)
    c = run(tiny, scenes[:4], batch_size=3, **kw)
    xr.testing.assert_identical(a, c)
    xr.testing.assert_allclose(a, b)


def test_targets_predicted_and_given(tiny, scenes):
    ds = run(tiny, scenes, targets="predicted", metrics=["pointing_game", "class_sensitivity"])
    with torch.no_grad():
        top = tiny(scenes.tensor()).argmax(1).numpy()
    assert ds["target"].values.tolist() == top.tolist()
    assert ds.sizes["pair"] == 0 and np.isnan(ds["score"].sel(metric="class_sensitivity")).all()
    given = run(tiny, scenes, targets=[0] * 6, metrics=["pointing_game"])
    assert given["target"].values.tolist() == [0] * 6
    # class 0 is absent from some images: no box, so no value there
    absent = scenes.labels.values[:, 0] == 0
    assert np.isnan(given["pointing_game"].values[:, absent]).all()


def test_per_class_and_instances_with_names(tiny, scenes):
    ds = run(
        tiny, scenes, metrics=[PointingGame(per_class=True), RegionPerturbation("lerf", steps=2)]
    )
    assert ds["metric"].values.tolist() == ["pointing_game", "region_perturbation_lerf"]
    assert ds["higher_is_better"].values.tolist() == [True, False]
    assert json.loads(ds.attrs["metric_params"])["pointing_game"]["per_class"] is True


def test_netcdf_round_trip_table_and_json(tiny, scenes, tmp_path):
    ds = run(tiny, scenes)
    ds.to_netcdf(tmp_path / "r.nc", engine="h5netcdf")
    xr.testing.assert_identical(xr.open_dataset(tmp_path / "r.nc", engine="h5netcdf").load(), ds)
    table = format_table(ds)
    assert "pointing_game ↑" in table and "class_sensitivity ↓" in table
    assert table.count("*") >= 4  # a best method per column
    md = format_markdown(ds).splitlines()
    assert md[0].startswith("| method | pointing_game ↑") and len(md) == 2 + 2
    assert all(line.count("|") == len(METRICS) + 2 for line in md)
    d = scores_dict(ds)
    assert set(d) == {"gradient", "gradcam"} and set(d["gradcam"]) == set(METRICS)
    json.dumps(d)


def test_bad_arguments(tiny, scenes):
    with pytest.raises(ConfigError, match="unknown methods"):
        run(tiny, scenes, methods=["lrp2"])
    with pytest.raises(ConfigError, match="unknown metric"):
        run(tiny, scenes, metrics=["pointing"])
    with pytest.raises(ConfigError, match="repeat"):
        run(tiny, scenes, metrics=["ablation", Ablation(patch=3)])
    with pytest.raises(ConfigError, match="targets"):
        run(tiny, scenes, targets="all")
    with pytest.raises(InputError, match="one per image"):
        run(tiny, scenes, targets=[0, 1])
    with pytest.raises(InputError, match="data must be"):
        run(tiny, "scenes")
    with pytest.raises(InputError, match="bundle"):
        cw.evaluate("shapes", scenes)


def test_evaluate_stays_callable_after_the_cli_module_is_imported(tiny, scenes):
    import clrp_widgets.evaluate  # noqa: F401  (this rebinds cw.evaluate to the module)

    ds = cw.evaluate(tiny, scenes[:2], methods=["gradient"], metrics=["pointing_game"],
                     input_bounds=(0.0, 1.0), progress=False)  # fmt: skip
    assert ds.sizes["method"] == 1


def test_relevance_methods_use_the_engine_maps(tiny, scenes):
    ds = run(
        tiny, scenes[:3], methods=["lrp", "clrp1", "clrp2", "sglrp"], metrics=["pointing_game"]
    )
    data = EvalData.from_scenes(scenes[:3])
    img, tgt = ds["image"].values, torch.as_tensor(ds["target"].values)
    x = data.images[torch.as_tensor(img)]
    regions = [data.region(int(i), int(c)) for i, c in zip(img, tgt, strict=True)]
    maps = {"lrp": cw.lrp(tiny, x, tgt, input_bounds=(0.0, 1.0)).sum(1)}
    for v in ("clrp1", "clrp2", "sglrp"):
        maps[v] = cw.clrp(tiny, x, tgt, variant=v, input_bounds=(0.0, 1.0)).sum(1)
    for method, m in maps.items():
        expected = PointingGame()(m, regions)
        np.testing.assert_array_equal(ds["pointing_game"].sel({"method": method}), expected)


def test_lrp_maps_of_proportional_logit_rows_are_perfectly_correlated(tiny, scenes):
    """Logit rows W_k = a_k·w (a_k > 0): LRP's z+ split is class-independent, so r = 1."""
    model = torch.nn.Sequential(*list(tiny.children())).eval()
    last = torch.nn.Linear(8 * 16 * 16, 8, bias=False)
    w = torch.rand(8 * 16 * 16) - 0.3
    last.weight.data = torch.linspace(0.5, 2.0, 8)[:, None] * w[None]
    model[-1] = last
    model.eval()
    ds = run(model, scenes[:4], methods=["lrp"], metrics=["class_sensitivity"])
    np.testing.assert_allclose(ds["class_sensitivity"].values, 1.0, atol=1e-6)


def test_unpacked_scenes_tuple_and_default_bounds(tiny, scenes):
    kw = {"methods": ["lrp"], "metrics": ["pointing_game"], "progress": False}
    a = cw.evaluate(tiny, scenes[:2], **kw)
    b = cw.evaluate(tiny, tuple(scenes[:2]), **kw)
    assert a.attrs["input_bounds"] == "(0.0, 1.0)"
    xr.testing.assert_identical(a, b)
    c = run(tiny, scenes[:2], **{k: v for k, v in kw.items() if k != "progress"})
    xr.testing.assert_identical(a, c)


def test_scenes_are_normalised_like_the_bundle_preprocess(tiny, scenes):
    from clrp_widgets.models.bundle import ModelBundle, Preprocess

    pre = Preprocess(resize=64, crop=64, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.25))
    bundle = ModelBundle(tiny, [str(c) for c in range(8)], pre.input_bounds, pre, name="tiny")
    kw = {"methods": ["lrp"], "metrics": ["pointing_game", "ablation"], "progress": False}
    got = cw.evaluate(bundle, scenes[:2], **kw)
    data = EvalData.from_scenes(scenes[:2])
    mean, std = torch.tensor(pre.mean)[:, None, None], torch.tensor(pre.std)[:, None, None]
    norm = EvalData(
        (data.images - mean) / std, data.labels, data.boxes, data.object_class, data.ids
    )
    ref = cw.evaluate(tiny, norm, input_bounds=pre.input_bounds, **kw)
    np.testing.assert_allclose(got["score"].values, ref["score"].values, rtol=1e-5)
    assert got.attrs["model"] == "tiny"


def test_registry_names_and_method_reductions(tiny, scenes):
    from clrp_widgets.engine.baselines import baseline
    from clrp_widgets.metrics.methods import method_maps
    from clrp_widgets.metrics.runner import make_metric

    assert make_metric(ClassSensitivity("ssim"))[0] == "class_sensitivity_ssim"
    assert make_metric("class_sensitivity_ssim")[1].similarity == "ssim"
    assert make_metric("region_perturbation_lerf")[1].order == "lerf"
    x, t = scenes.tensor()[:2], torch.tensor([0, 1])
    gxi = method_maps("gradient_x_input", tiny, x, t, (0.0, 1.0))
    np.testing.assert_allclose(gxi, baseline(tiny, x, t, "gradient_x_input").sum(1), rtol=1e-6)
    dec = method_maps("deconvnet", tiny, x, t, (0.0, 1.0))
    np.testing.assert_allclose(dec, baseline(tiny, x, t, "deconvnet").abs().amax(1), rtol=1e-6)
    with pytest.raises(ConfigError, match="unknown method"):
        method_maps("saliency", tiny, x, t, None)
