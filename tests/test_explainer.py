"""The object API end to end on a small bias-free CNN (DESIGN §2, §3)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import clrp_widgets as cw
from clrp_widgets.engine import RelevanceEngine
from clrp_widgets.engine import baselines as bl
from clrp_widgets.engine.errors import ConfigError, InputError, LayerNotFoundError
from clrp_widgets.results import decode_attrs, open_tree

NAMES = ["disk", "square", "ring", "star", "cross"]


def tiny_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1, bias=False),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 2 * 2, 16, bias=False),
        nn.ReLU(),
        nn.Linear(16, 5, bias=False),
    )
    model[-1].weight.data.abs_()  # every class reachable: z+ loses no dual relevance
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


@pytest.fixture(scope="module")
def model() -> nn.Sequential:
    return tiny_cnn()


@pytest.fixture(scope="module")
def ex(model) -> cw.Explainer:
    bundle = SimpleNamespace(model=model, class_names=NAMES, input_bounds=(0.0, 1.0), name="tiny")
    return cw.Explainer(bundle)


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 3, 8, 8)


LAYERS = ["0", "2", "3", "5", "7", "9"]


def test_bundle_fills_defaults_and_layer_names(ex) -> None:
    assert ex.class_names == NAMES and ex.model_name == "tiny"
    assert ex.layer_names == LAYERS
    plain = cw.Explainer(tiny_cnn(), input_bounds=(0, 1))
    assert plain.class_names is None and plain.model_name == "Sequential"


def test_explain_returns_the_design_schema(ex, x) -> None:
    tree = ex.explain(x, [1, 3])
    assert list(tree["layers"].children) == LAYERS
    assert tree["target"].values.tolist() == [1, 3]
    assert tree["class_name"].values.tolist() == NAMES
    assert tree["input"].relevance.shape == (3, 2, 3, 8, 8)
    assert tree["input"]["kind"].values.tolist() == ["target", "dual", "contrast"]
    assert tree["layers/3"].relevance.dims == ("kind", "sample", "channel", "y", "x")
    assert tree["layers/9"].relevance.dims == ("kind", "sample", "unit")
    attrs = decode_attrs(tree.attrs)
    assert attrs["method"] == "clrp" and attrs["contrast"] == "clrp1"
    assert attrs["rules"] == "paper" and attrs["dual_seed"] == "uniform"
    assert attrs["input_bounds"] == [0.0, 1.0] and attrs["model"] == "tiny"
    assert attrs["version"] == cw.__version__
    relevance = tree["input"].relevance
    np.testing.assert_allclose(
        relevance.sel(kind="contrast"),
        relevance.sel(kind="target") - relevance.sel(kind="dual"),
        atol=1e-6,
    )


def test_tree_equals_the_engine_output(model, ex, x) -> None:
    engine = RelevanceEngine(model, input_bounds=(0.0, 1.0))
    out = engine.run(x, 2, contrast="clrp2", kinds=("contrast",), capture=["5"])
    tree = ex.explain(x, "ring", contrast="clrp2", kinds=("contrast",), layers=["5"])
    np.testing.assert_array_equal(tree["input"].relevance.values, out.input.numpy())
    np.testing.assert_array_equal(tree["layers/5"].relevance.values, out.layers["5"].relevance)
    np.testing.assert_array_equal(tree["logits"].values, out.logits.numpy())
    assert list(tree["layers"].children) == ["5"]


def test_conservation_ledger_on_a_bias_free_net(ex, x) -> None:
    tree = ex.explain(x, 0)
    seed = decode_attrs(tree.attrs)["seed_sum"]
    for path in ["input", *(f"layers/{n}" for n in LAYERS)]:
        ledger = decode_attrs(tree[path].attrs)["conservation"]
        total = tree[path].relevance.sum([d for d in tree[path].relevance.dims if d != "kind"])
        assert ledger["target"] == pytest.approx(float(total[0]) / seed["target"], rel=1e-6)
        assert ledger["target"] == pytest.approx(1, rel=1e-4), path
        assert ledger["dual"] == pytest.approx(1, rel=1e-4), path
        assert ledger["contrast"] is None  # CLRP1's contrast seed sums to zero
    total = tree["layers/3"].neuron_relevance.sum(("sample", "channel"))
    np.testing.assert_allclose(total.sel(kind="contrast"), 0, atol=1e-4)


def test_lrp_has_target_kind_only_and_single_image_gets_batch_dim(ex, x) -> None:
    tree = ex.explain(x[0], "star", contrast="lrp", layers=None)
    assert tree["input"]["kind"].values.tolist() == ["target"]
    assert tree["input"].heatmap.shape == (1, 1, 8, 8)
    assert list(tree["layers"].children) == []
    attrs = decode_attrs(tree.attrs)
    assert attrs["method"] == "lrp" and attrs["dual_seed"] is None


def test_pairwise_contrast_by_class_name(ex, x) -> None:
    by_name = ex.explain(x, "disk", contrast="cross", layers=None)
    by_index = ex.explain(x, 0, contrast=4, layers=None)
    assert decode_attrs(by_name.attrs)["contrast"] == 4
    xr.testing.assert_identical(by_name["input"].to_dataset(), by_index["input"].to_dataset())


def test_targets_as_names_numpy_and_tensors_agree(ex, x) -> None:
    expected = ex.explain(x, [1, 3], layers=None)["input"].relevance
    for target in (["square", "star"], np.array([1, 3]), [np.int64(1), 3], torch.tensor([1, 3])):
        got = ex.explain(x, target, layers=None)
        xr.testing.assert_equal(got["input"].relevance, expected)
        assert got["target"].values.tolist() == [1, 3]


def test_class_names_must_match_the_model(model, x) -> None:
    with pytest.raises(ConfigError, match="one name per class"):
        cw.Explainer(model, input_bounds=(0, 1), class_names=["a", "b"]).explain(x, 0)


def test_unknown_class_name_suggests_the_closest(ex, x) -> None:
    with pytest.raises(InputError, match="'square'"):
        ex.explain(x, "sqare")
    with pytest.raises(InputError, match="no class names"):
        cw.Explainer(tiny_cnn(), input_bounds=(0, 1)).explain(x, "disk")


def test_engine_errors_reach_the_user(ex, x) -> None:
    with pytest.raises(ConfigError):
        ex.explain(x, 0, contrast="clrp3")
    with pytest.raises(LayerNotFoundError):
        ex.explain(x, 0, layers=["features.3"])
    with pytest.raises(InputError):
        ex.explain(x, [0, 1, 2])
    with pytest.raises(ConfigError, match="ModelBundle"):
        cw.Explainer(object())


def test_round_trip_of_a_real_tree(ex, x, tmp_path) -> None:
    tree = ex.explain(x, [1, 3], contrast="sglrp")
    tree.to_netcdf(tmp_path / "t.nc", engine="h5netcdf")
    assert open_tree(tmp_path / "t.nc").identical(tree)


def test_neuron_tree(ex, x) -> None:
    tree = ex.neuron(x, "3", 5)
    attrs = decode_attrs(tree.attrs)
    assert attrs["method"] == "neuron" and attrs["layer"] == "3" and attrs["channel"] == 5
    assert attrs["contrast"] == "layer"
    assert tree["target"].values.tolist() == [5, 5]
    assert list(tree["layers"].children) == ["0", "2", "3"]  # layers after "3" are left out
    assert tree["input"]["kind"].values.tolist() == ["target", "dual", "contrast"]
    seed = tree["layers/3"].relevance.sel(kind="target")
    np.testing.assert_allclose(seed.isel(channel=5), tree["layers/3"].activation.isel(channel=5))
    plain = ex.neuron(x[0], "3", 5, contrast=None, layers=None)
    assert plain["input"]["kind"].values.tolist() == ["target"]


def test_conditional_maps_sum_to_the_decision(ex, x) -> None:
    maps = ex.conditional(x, [1, 3], "5", range(8))
    assert maps.dims == ("channel", "sample", "y", "x") and maps.shape == (8, 2, 8, 8)
    assert maps["channel"].values.tolist() == list(range(8))
    assert maps["target"].values.tolist() == [1, 3]
    attrs = decode_attrs(maps.attrs)
    assert attrs["layer"] == "5" and attrs["contrast"] == "clrp1" and attrs["model"] == "tiny"
    full = ex.explain(x, [1, 3], layers=None)["input"].heatmap.sel(kind="contrast")
    np.testing.assert_allclose(maps.sum("channel"), full, atol=1e-5)
    one = ex.conditional(x[1], "star", "5", [2])
    np.testing.assert_allclose(one.isel(sample=0), maps.isel(sample=1, channel=[2]), atol=1e-6)


@pytest.mark.parametrize("method", bl.BASELINES)
def test_baselines_as_heatmaps(model, ex, x, method: str) -> None:
    heat = ex.baseline(x, "ring", method)
    assert heat.dims == ("sample", "y", "x") and heat.shape == (2, 8, 8)
    assert heat.name == method and heat["target"].values.tolist() == [2, 2]
    raw = bl.baseline(model, x, 2, method)
    expected = raw if method == "gradcam" else raw.sum(1)
    np.testing.assert_allclose(heat.values, expected.numpy(), rtol=1e-6)
    if method == "gradcam":
        assert heat.attrs["layer"] == "3"
        assert ex.baseline(x, 2, method, layer="5").attrs["layer"] == "5"


def test_unknown_baseline(ex, x) -> None:
    with pytest.raises(ConfigError, match="guided_backprop"):
        ex.baseline(x, 0, "saliency")


def test_predict_is_softmax_with_class_names(model, ex, x) -> None:
    probs = ex.predict(x)
    assert probs.dims == ("sample", "class")
    assert probs["class_name"].values.tolist() == NAMES
    np.testing.assert_allclose(probs.values, torch.softmax(model(x), 1).numpy(), rtol=1e-6)
    assert ex.predict(x[0]).shape == (1, 5)


def test_model_left_untouched(x) -> None:
    model = tiny_cnn()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ex = cw.Explainer(model, input_bounds=(0, 1))
    ex.explain(x, 1)
    ex.neuron(x, "3", 0)
    ex.conditional(x, 1, "3", [0, 1])
    ex.baseline(x, 1, "guided_backprop")
    ex.predict(x)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


@pytest.mark.filterwarnings("ignore:The data type")  # zarr 3: fixed-width strings, no v3 spec
@pytest.mark.filterwarnings("ignore:Consolidated metadata")  # zarr 3: not in the v3 spec yet
def test_nested_module_names_on_torchvision_resnet18(tmp_path) -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(7)
    model = torchvision.models.resnet18(num_classes=6).eval()
    ex = cw.Explainer(model, input_bounds=(-3.0, 3.0))
    x = torch.randn(1, 3, 32, 32).clamp(-3, 3)
    tree = ex.explain(x, 2, layers=["conv1", "layer1.0.conv1", "layer4.1.conv2", "fc"])
    assert list(tree["layers"].children) == ["conv1", "layer1.0.conv1", "layer4.1.conv2", "fc"]
    assert tree["layers/layer1.0.conv1"].relevance.dims == ("kind", "sample", "channel", "y", "x")
    ledger = decode_attrs(tree["layers/conv1"].attrs)["conservation"]
    assert ledger["target"] == pytest.approx(1, rel=1e-4)  # BatchNorm merged, sums split
    tree.to_zarr(tmp_path / "r.zarr")
    assert open_tree(tmp_path / "r.zarr").identical(tree)


@pytest.mark.filterwarnings("ignore:The data type")
@pytest.mark.filterwarnings("ignore:Consolidated metadata")
def test_shipped_shapes_model_end_to_end(tmp_path) -> None:
    bundle = cw.load_model("shapes")
    ex = cw.Explainer(bundle)
    scenes = cw.scenes(2, seed=11)
    x = scenes.tensor()
    names = scenes.labels["class_name"].values
    present = [str(names[row.argmax()]) for row in scenes.labels.values]
    probs = ex.predict(x)
    assert probs["class_name"].values.tolist() == list(bundle.class_names)
    tree = ex.explain(x, present, contrast="clrp2")
    assert tree["class_name"].values.tolist() == list(bundle.class_names)
    assert list(tree["layers"].children) == ex.layer_names
    assert decode_attrs(tree.attrs)["model"] == bundle.name
    for path in ["input", *(f"layers/{n}" for n in ex.layer_names)]:
        ledger = decode_attrs(tree[path].attrs)["conservation"]
        assert ledger["target"] == pytest.approx(1, rel=1e-3), path
    assert ex.baseline(x, present, "gradcam").shape == (2, *x.shape[-2:])
    tree.to_zarr(tmp_path / "shapes.zarr")
    assert open_tree(tmp_path / "shapes.zarr").identical(tree)
