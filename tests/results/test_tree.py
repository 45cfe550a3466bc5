"""Schema of the result tree (DESIGN §3), built from a hand-made engine output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import LAYER_ORDER, make_output

from clrp_widgets.engine.errors import ConfigError
from clrp_widgets.results import build_tree, decode_attrs, module_name, node_name

NAMES = ["disk", "square", "ring", "<b>star</b>"]
PROVENANCE = {
    "method": "clrp",
    "rules": "paper",
    "contrast": "clrp1",
    "dual_seed": "uniform",
    "input_bounds": [0.0, 1.0],
    "model": "tiny",
    "version": "0.1.0",
}


@pytest.fixture
def tree(output) -> xr.DataTree:
    return build_tree(output, class_names=NAMES, attrs=PROVENANCE)


def test_root_holds_logits_probs_classes_targets_and_provenance(tree, output) -> None:
    root = tree.to_dataset()
    assert root.logits.dims == ("sample", "class") and root.probs.dims == ("sample", "class")
    np.testing.assert_array_equal(root.logits.values, output.logits.numpy())
    expected = torch.softmax(output.logits, dim=1).numpy()
    np.testing.assert_allclose(root.probs.values, expected, rtol=1e-6)
    assert root.probs.dtype == np.float32
    assert root["class"].values.tolist() == [0, 1, 2, 3]
    assert root.class_name.dims == ("class",) and root.class_name.values.tolist() == NAMES
    assert root.target.dims == ("sample",) and root.target.values.tolist() == [1, 3]
    attrs = decode_attrs(tree.attrs)
    assert {k: attrs[k] for k in PROVENANCE} == PROVENANCE
    assert attrs["layer_order"] == LAYER_ORDER
    assert set(attrs["seed_sum"]) == {"target", "dual", "contrast"}


def test_input_node_relevance_and_heatmap(tree, output) -> None:
    node = tree["input"]
    assert node.relevance.dims == ("kind", "sample", "color", "y", "x")
    assert node.heatmap.dims == ("kind", "sample", "y", "x")
    assert node["kind"].values.tolist() == ["target", "dual", "contrast"]
    np.testing.assert_array_equal(node.relevance.values, output.input.numpy())
    np.testing.assert_allclose(node.heatmap.values, output.input.sum(2).numpy(), rtol=1e-6)
    clipped = node.heatmap.sel(kind="contrast").clip(min=0)
    assert (clipped >= 0).all()


def test_layer_nodes_keep_module_names_with_dots_in_forward_order(tree, output) -> None:
    assert list(tree["layers"].children) == LAYER_ORDER
    conv = tree["layers/features.10"]
    assert conv.relevance.dims == ("kind", "sample", "channel", "y", "x")
    assert conv.activation.dims == ("sample", "channel", "y", "x")
    assert conv.neuron_relevance.dims == ("kind", "sample", "channel")
    capture = output.layers["features.10"]
    np.testing.assert_array_equal(conv.relevance.values, capture.relevance.numpy())
    np.testing.assert_array_equal(conv.activation.values, capture.activation.numpy())
    np.testing.assert_allclose(
        conv.neuron_relevance.values, capture.relevance.sum((3, 4)).numpy(), rtol=1e-5
    )
    assert tree["layers"]["features.10"].name == "features.10"


def test_linear_layer_uses_unit_dim(tree, output) -> None:
    node = tree["layers/classifier.1"]
    assert node.relevance.dims == ("kind", "sample", "unit")
    assert node.activation.dims == ("sample", "unit")
    assert node.neuron_relevance.dims == ("kind", "sample", "channel")
    np.testing.assert_array_equal(
        node.neuron_relevance.values, output.layers["classifier.1"].relevance.numpy()
    )


def test_conservation_ledger_per_kind(tree) -> None:
    for path in ["input", "layers/features.0", "layers/features.2", "layers/classifier.1"]:
        ledger = decode_attrs(tree[path].attrs)["conservation"]
        assert ledger["target"] == pytest.approx(1, rel=1e-5)
        assert ledger["dual"] == pytest.approx(1, rel=1e-5)
        assert ledger["contrast"] is None  # the contrast seed sums to zero: ratio undefined


def test_ledger_reports_non_conservation() -> None:
    output = make_output()
    output.layers["features.0"].relevance[0] *= 0.5
    ledger = decode_attrs(build_tree(output)["layers/features.0"].attrs)["conservation"]
    assert ledger["target"] == pytest.approx(0.5, rel=1e-5)


def test_plain_lrp_has_only_the_target_kind() -> None:
    tree = build_tree(make_output(kinds=("target",), n=1))
    assert tree["input"]["kind"].values.tolist() == ["target"]
    assert tree["layers/features.2"].relevance.shape == (1, 1, 7, 3, 3)
    assert tree["class_name"].values.tolist() == ["0", "1", "2", "3"]


def test_arrays_are_wrapped_not_copied(tree, output) -> None:
    assert np.shares_memory(tree["input"].relevance.values, output.input.numpy())
    capture = output.layers["features.0"]
    assert np.shares_memory(tree["layers/features.0"].relevance.values, capture.relevance.numpy())
    assert np.shares_memory(tree["layers/features.0"].activation.values, capture.activation.numpy())


def test_no_layers_gives_an_empty_layers_node() -> None:
    output = make_output()
    output.layers = {}
    tree = build_tree(output)
    assert list(tree["layers"].children) == []
    assert decode_attrs(tree.attrs)["layer_order"] == []


def test_wrong_number_of_class_names_is_refused(output) -> None:
    with pytest.raises(ConfigError, match="3 class names"):
        build_tree(output, class_names=["a", "b", "c"])


@pytest.mark.parametrize("name", ["features.28", "layer1.0.conv1", "", "odd/name", "(model)x"])
def test_node_names_round_trip(name: str) -> None:
    assert module_name(node_name(name)) == name
    assert "/" not in node_name(name) and node_name(name)
