"""Explainer.decompose and attribution_graph on the shipped model: conservation, a slow
hand-written z+ reference, top-k order, errors, and the model left untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import clrp_widgets as cw
from clrp_widgets.engine.errors import InputError, LayerNotFoundError
from clrp_widgets.results import decode_attrs


@pytest.fixture(scope="module")
def setup():
    bundle = cw.load_model("shapes")
    scenes = cw.scenes(2, seed=11)
    x = scenes.tensor()[:1]
    target = int(np.flatnonzero(scenes.labels.values[0])[0])
    return cw.Explainer(bundle), x, target


@pytest.mark.parametrize(
    ("layer", "into"),
    [
        ("features.8", "features.6"),
        ("features.11", "features.10"),
        ("classifier.0", "features.13"),
        ("classifier.2", "classifier.0"),
        ("features.13", "features.10"),
    ],
)
@pytest.mark.parametrize("contrast", ["clrp1", "lrp", "clrp2"])
def test_decomposition_adds_up_to_the_neurons_relevance(setup, layer, into, contrast):
    ex, x, target = setup
    kind = "target" if contrast == "lrp" else "contrast"
    tree = ex.explain(x, target, contrast=contrast, layers=[layer])
    neuron = tree[f"layers/{layer}"]["neuron_relevance"].sel(kind=kind).values[0]
    for channel in np.argsort(-np.abs(neuron))[:3]:
        parts = ex.decompose(x, target, layer, int(channel), contrast=contrast)
        attrs = decode_attrs(parts.attrs)
        assert attrs["into"] == into and attrs["layer"] == layer
        np.testing.assert_allclose(attrs["neuron_relevance"], neuron[channel], rtol=1e-4, atol=1e-7)
        scale = max(1e-6, float(np.abs(parts.values).sum()))
        assert abs(float(parts.values.sum()) - neuron[channel]) <= 1e-4 * scale
        assert abs(attrs["residual"]) <= 1e-4 * scale
        assert parts.dims == ("channel",) and len(parts) == tree_channels(ex, x, into)


def tree_channels(ex, x, layer) -> int:
    return int(ex.explain(x, 0, contrast="lrp", layers=[layer])[f"layers/{layer}"].sizes["channel"])


def test_decomposition_equals_a_hand_written_z_plus_step(setup):
    """features.8 (conv) on ReLU(features.6): R_i = a_i sum_j w+_ij R_j / (z+_j + 1e-9)."""
    ex, x, target = setup
    tree = ex.explain(x, target, contrast="clrp1", layers=["features.6", "features.8"])
    rel = torch.from_numpy(tree["layers/features.8"]["relevance"].sel(kind="contrast").values)
    a = torch.from_numpy(tree["layers/features.6"]["activation"].values).clamp(min=0)
    conv = ex.model.features[8]
    w = conv.weight.detach().clamp(min=0).double()
    a = a.double()
    z = F.conv2d(a, w, padding=1) + 1e-9
    for channel in (0, 7, 31):
        kept = torch.zeros_like(rel, dtype=torch.float64)
        kept[:, channel] = rel[:, channel].double()
        below = a * F.conv_transpose2d(kept / z, w, padding=1)
        expected = below[0].sum(dim=(1, 2)).numpy()
        got = ex.decompose(x, target, "features.8", channel, into="features.6")
        np.testing.assert_allclose(got.values, expected, rtol=1e-4, atol=1e-7)


def test_top_k_is_the_largest_parts_in_descending_order(setup):
    ex, x, target = setup
    full = ex.decompose(x, target, "features.11", 5)
    top = ex.decompose(x, target, "features.11", 5, k=4)
    order = np.lexsort((full.channel.values, -full.values))[:4]
    assert list(top.channel.values) == list(full.channel.values[order])
    np.testing.assert_array_equal(top.values, full.values[order])
    assert (
        decode_attrs(top.attrs)["neuron_relevance"] == decode_attrs(full.attrs)["neuron_relevance"]
    )


def test_attribution_graph_lists_the_top_paths(setup):
    ex, x, target = setup
    graph = ex.attribution_graph(x, target, "features.11", 5, depth=2, k=3)
    assert list(graph.columns) == [
        "depth", "parent_layer", "parent_channel", "layer", "channel", "relevance", "share", "path"
    ]  # fmt: skip
    assert list(graph["depth"]) == [1] * 3 + [2] * 9
    first = graph[graph["depth"] == 1]
    top = ex.decompose(x, target, "features.11", 5, k=3)
    assert list(first["channel"]) == list(top.channel.values)
    np.testing.assert_allclose(first["relevance"], top.values, rtol=1e-5, atol=1e-8)
    root = graph.attrs["neuron_relevance"]
    np.testing.assert_allclose(first["share"], top.values / root, rtol=1e-5)
    for _, parent in first.iterrows():
        children = graph[(graph["depth"] == 2) & (graph["parent_channel"] == parent["channel"])]
        assert len(children) == 3 and set(children["layer"]) == {"features.6"}
        # every sub-neuron's relevance along the path: the top 3 of them, and they all add up
        path = [("features.11", 5), ("features.10", int(parent["channel"]))]
        along = ex.engine.relevance_along(x, target, path, "features.6")[0].sum(dim=(1, 2))
        along = along.double().numpy()
        assert list(children["channel"]) == list(np.argsort(-along, kind="stable")[:3])
        np.testing.assert_allclose(children["relevance"], along[children["channel"]], rtol=1e-5)
        np.testing.assert_allclose(along.sum(), parent["relevance"], rtol=1e-4, atol=1e-7)
        assert all(
            p.startswith(f"features.11:5 > features.10:{parent['channel']} > ")
            for p in children["path"]
        )
    shallow = ex.attribution_graph(x, target, "features.3", 0, depth=3, k=2)
    assert list(shallow["layer"]) == ["features.2", "features.2"]  # stops at the first layer


def test_errors_name_the_fix_and_the_model_is_left_as_it_was(setup):
    ex, x, target = setup
    before = {k: v.clone() for k, v in ex.model.state_dict().items()}
    with pytest.raises(InputError, match=r"one image; got a batch of 2\. Pass x\[i\]"):
        ex.decompose(torch.cat([x, x]), target, "features.8", 0)
    with pytest.raises(InputError, match="is not below"):
        ex.decompose(x, target, "features.6", 0, into="features.8")
    with pytest.raises(InputError, match="out of range"):
        ex.decompose(x, target, "features.8", 64)
    with pytest.raises(LayerNotFoundError):
        ex.decompose(x, target, "features.7", 0)
    with pytest.raises(InputError, match="k must be"):
        ex.attribution_graph(x, target, "features.8", 0, k=0)
    with pytest.raises(InputError, match="no captured layer below"):
        ex.decompose(x, target, "features.0", 0)
    after = ex.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in ex.model.modules())
