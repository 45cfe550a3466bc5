"""The Explorer on a (tiny, random) vision transformer: heads and hidden units as neurons,
their conditional maps compared, and token layers on the patch grid (no browser)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from test_explorer import shown
from tiny_vit import tiny_vit
from widget_messages import bar_click, custom

import clrp_widgets as cw
from clrp_widgets.models.bundle import ModelBundle

BLOCK = "encoder.layers.encoder_layer_1"
ATTENTION = f"{BLOCK}.self_attention:softmax"
MLP0 = "encoder.layers.encoder_layer_0.mlp.0"  # (the last block's patch tokens get nothing:
# only the class token is read after it, and its MLP acts per token)
NAMES = ["disk", "square", "ring", "bar", "cross"]


def tiny_vit_bundle() -> ModelBundle:
    """A random ViT: 32 px images, 8 px patches (a 4 x 4 grid plus the class token), 4 heads."""
    return ModelBundle(tiny_vit(), NAMES, (0.0, 1.0), name="tiny-vit")


@pytest.fixture(scope="module")
def vit_ex():
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(2))
    ex = cw.Explorer(tiny_vit_bundle(), image, rules="attnlrp").wait()
    return ex, image, ex.session.explainer("attnlrp")


def test_the_default_layer_is_the_last_attention_map(vit_ex):
    ex, _, _ = vit_ex
    assert ex.layer == ATTENTION and ex.bars.channels  # its neurons: the heads
    assert ex.heatmap.neuron_noun == "heads"  # the map's "click a pixel to list the heads" hint


def test_two_heads_are_clicked_and_compared(vit_ex):
    ex, image, explainer = vit_ex
    ex.select(layer=ATTENTION, channels=[])
    assert ex.error == "" and ex.bars.channels and sorted(ex.bars.channels) == [0, 1, 2, 3]
    labels = list(ex.bars.bars.x)
    assert labels == [f"head {c}" for c in ex.bars.channels]
    assert "heads by" in ex.bars.figure.title
    a, b = ex.bars.channels[0], ex.bars.channels[1]
    bar_click(ex.bars.bars, 0)
    ex.wait()
    assert ex.channels == [a] and ex.neuron_view.state["view"] == "single"
    cond = explainer.conditional(image, ex.target, ATTENTION, [a, b], contrast="clrp1")
    maps = shown(ex.neuron_view)
    assert maps.shape == (2, 32, 32) and np.isfinite(maps).all()  # input map + patch grid
    np.testing.assert_allclose(maps[0], cond.values[0, 0], rtol=1e-5, atol=1e-8)
    assert ex.neuron_view.panel_titles[1].startswith(f"head {a} at the layer, 4×4 patch grid")
    tree = explainer.explain(image, ex.target, contrast="clrp1", layers=[ATTENTION])
    rel = tree["layers"][ATTENTION].ds.relevance.sel(kind="contrast").values[0, a]
    per_key = rel.sum(0)  # (query, key) -> each key token's relevance
    cells = np.kron(per_key[1:].reshape(4, 4), np.ones((8, 8)))
    np.testing.assert_allclose(maps[1], cells, rtol=1e-5, atol=1e-8)
    assert f"class token {per_key[0]:+.3g}" in ex.neuron_view.panel_titles[1]
    bar_click(ex.bars.bars, 1)
    ex.wait()
    assert ex.channels == [a, b] and ex.neuron_view.state["view"] == "compare"
    maps = shown(ex.neuron_view)
    assert maps.shape == (3, 32, 32) and np.isfinite(maps).all()
    np.testing.assert_allclose(maps[0], cond.values[0, 0], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(maps[1], cond.values[1, 0], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(maps[2], maps[0] - maps[1], rtol=1e-6, atol=1e-8)
    assert ex.neuron_view.panel_titles[:2] == [f"A: head {a}", f"B: head {b}"]
    assert ex.neuron_view.caption.startswith(f"head {a} vs head {b}")
    assert ex.heatmap.panel_titles[0].startswith("CLRP1")  # the image-level map stays
    result = ex.result
    assert result["layers"][ATTENTION].ds.relevance.dims[2:] == ("channel", "query", "key")


def test_a_hidden_unit_of_a_token_layer_on_the_patch_grid(vit_ex):
    ex, image, explainer = vit_ex
    ex.select(layer=MLP0, channels=[17])
    assert ex.error == "" and ex.neuron_view.state["view"] == "single"
    assert all(label.startswith("unit ") for label in ex.bars.bars.x)
    maps = shown(ex.neuron_view)
    assert maps.shape == (2, 32, 32) and np.isfinite(maps).all()
    cond = explainer.conditional(image, ex.target, MLP0, [17], contrast="clrp1")
    np.testing.assert_allclose(maps[0], cond.values[0, 0], rtol=1e-5, atol=1e-8)
    node = explainer.explain(image, ex.target, contrast="clrp1", layers=[MLP0])["layers"][MLP0]
    unit = node.ds.relevance.sel(kind="contrast", channel=17).values[0]  # (token,)
    title = ex.neuron_view.panel_titles[1]
    assert title.startswith("unit 17 at the layer, 4×4 patch grid")
    assert f"class token {unit[0]:+.3g}" in title
    # the grid panel: each patch token's relevance over its 8 x 8 pixels; with the class
    # token it adds up to the unit's relevance at the layer
    cells = maps[1].reshape(4, 8, 4, 8)[:, 0, :, 0]
    np.testing.assert_allclose(cells.ravel(), unit[1:], rtol=1e-5, atol=1e-9)
    total = node.ds.neuron_relevance.sel(kind="contrast", channel=17).item()
    assert cells.sum() + unit[0] == pytest.approx(total, rel=1e-5, abs=1e-9)
    # a pixel click lists the hidden units with the most relevance at that patch
    best = node.ds.relevance.sel(kind="contrast").values[0].clip(min=0).sum(0)[1:].argmax()
    y, x = 8 * (best // 4) + 3, 8 * (best % 4) + 3  # a pixel of the most relevant patch
    custom(ex.heatmap, {"event": "pixel", "y": int(y), "x": int(x)})
    ex.wait()
    listed = ex.heatmap.pixel_neurons
    assert listed and all(n["label"] == f"unit {n['channel']}" for n in listed)
    assert "hidden units with the most" in ex.heatmap.neuron_list_title


def test_neuron_mode_on_a_hidden_unit(vit_ex):
    ex, image, explainer = vit_ex
    ex.select(layer=MLP0, channels=[5], neuron_mode="neuron")
    assert ex.error == "" and ex.neuron_view.state["view"] == "single"
    maps = shown(ex.neuron_view)
    assert maps.shape == (1, 32, 32) and np.isfinite(maps).all()  # no patch-grid panel here
    tree = explainer.neuron(image, MLP0, 5, contrast="layer", layers=None)
    want = tree["input"]["heatmap"].sel(kind="contrast").values[0]
    np.testing.assert_allclose(maps[0], want, rtol=1e-5, atol=1e-8)
    assert ex.neuron_view.panel_titles == ["unit 5 (against the rest of its layer)"]
    ex.select(neuron_mode="decision", channels=[])


def test_the_shipped_vit_opens_with_its_own_preset_and_compares_two_heads():
    """``cw.Explorer(load_model("shapes_vit"), scenes)`` with no rules: the bundle's attnlrp."""
    bundle = cw.load_model("shapes_vit")
    ex = cw.Explorer(bundle, cw.scenes(2, seed=5)).wait()
    assert ex.error == "" and ex.rules == bundle.rules == "attnlrp"
    assert ex.layer.endswith(":softmax") and ex.bars.channels
    heads = ex.bars.channels[:2]
    ex.select(channels=heads)
    assert ex.neuron_view.state["view"] == "compare"
    assert all(np.isfinite(m).all() for m in shown(ex.neuron_view))
    assert ex.neuron_view.panel_titles[0].startswith("A: head")


def test_the_snapshot_holds_each_embedded_units_patch_grid(vit_ex):
    """The exported page's embedded maps carry each unit's patch-grid panel after the maps, as
    the live view shows it (8-bit: within a 254th of each panel's largest value)."""
    ex, _, _ = vit_ex
    ex.select(layer=MLP0, channels=[17], neuron_mode="decision")
    ex.wait()
    snap, n = ex.neuron_view.snapshot, len(ex.neuron_view.snapshot["channels"])
    assert 17 in snap["channels"] and len(snap["grid_titles"]) == n
    assert len(snap["scales"]) == 2 * n and snap["layer"] == MLP0
    codes = np.frombuffer(zlib.decompress(ex.neuron_view.snapshot_maps), np.uint8)
    scales = np.asarray(snap["scales"], np.float32)[:, None, None]
    saved = (codes.reshape(2 * n, 32, 32).astype(np.float32) - 128) / 127 * scales
    i = snap["channels"].index(17)
    live = shown(ex.neuron_view)
    assert snap["grid_titles"][i] == ex.neuron_view.panel_titles[1]
    np.testing.assert_allclose(saved[i], live[0], atol=float(scales[i, 0, 0]) / 254 + 1e-9)
    np.testing.assert_allclose(saved[n + i], live[1], atol=float(scales[n + i, 0, 0]) / 254 + 1e-9)
    ex.select(channels=[5], neuron_mode="neuron")  # no patch grid in neuron mode
    ex.wait()
    assert ex.neuron_view.snapshot["grid_titles"] == []
    ex.select(neuron_mode="decision", channels=[])
