"""The Explorer driven as the browser drives it: simulated front-end messages, real Explainer."""

from __future__ import annotations

import ipywidgets as w
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from widget_messages import bar_click, custom, update

import clrp_widgets as cw
from clrp_widgets.engine.errors import ConfigError
from clrp_widgets.results import open_tree
from clrp_widgets.widgets.explorer import CONTRASTS, RULES, Explorer
from clrp_widgets.widgets.maps import compare, neurons_at

EVIL = "<img src=x onerror=alert(1)>"
NAMES = ["disk", EVIL, "square", "ring", "bar"]


class TinyNet(nn.Module):
    """VGG-shaped: ``features`` (conv, relu, pool) and ``classifier`` (linear)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 24, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(24 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 5)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def shown(view) -> np.ndarray:
    return np.frombuffer(view.maps, np.float32).reshape(-1, view.height, view.width)


def test_first_view_is_drawn_from_binary_buffers(ex, explainer, image):
    probs = explainer.predict(image).values[0]
    assert ex.target == int(np.argmax(probs)) and ex.contrast == "clrp1"
    assert ex.layer == "features.3" and ex.map_version == 1
    assert isinstance(ex.heatmap.maps, bytes) and isinstance(ex.heatmap.image, bytes)
    assert len(ex.heatmap.image) == 32 * 32 * 3
    tree = explainer.explain(image, ex.target, contrast="clrp1", layers=["features.3"])
    want = tree["input"]["heatmap"].sel(kind="contrast").values[0]
    np.testing.assert_array_equal(shown(ex.heatmap)[0], want.astype(np.float32))
    state = ex.heatmap.state
    assert state["target"] == ex.target and state["layer"] == "features.3"
    assert state["map_version"] == 1 and state["channels"] == []
    contrast = tree["layers"]["features.3"]["neuron_relevance"].sel(kind="contrast").values[0]
    assert ex.bars.channels[0] == int(np.argmax(contrast))
    positive = [c for c in ex.bars.channels[:12] if contrast[c] > 0]  # never a zero one as "top"
    assert len(ex.bars.channels) == 24 and ex.thumbs.channels == positive
    thumbs = np.frombuffer(ex.thumbs.maps, np.float32)
    assert thumbs.size == len(positive) * ex.thumbs.height * ex.thumbs.width


def test_top5_click_and_target_picker_change_the_target(ex):
    before = shown(ex.heatmap).copy()
    other = ex.top5.classes[1]
    bar_click(ex.top5.bars, 1)
    ex.wait()
    assert ex.target == other and ex.heatmap.state["target"] == other
    assert not np.array_equal(before, shown(ex.heatmap))
    assert ex.controls.target_picker.value == other
    update(ex.controls.target_picker, index=4)
    ex.wait()
    assert ex.target == 4 and ex.heatmap.state["target_name"] == "bar"


@pytest.mark.parametrize("contrast", [v for _, v in CONTRASTS])
def test_every_contrast_from_the_picker(ex, explainer, image, contrast):
    index = [v for _, v in CONTRASTS].index(contrast)
    version = ex.map_version
    update(ex.controls.contrast_picker, index=index)
    ex.wait()
    assert ex.error == "" and ex.contrast == contrast
    assert ex.heatmap.state["contrast"] == contrast
    if contrast != "clrp1":
        assert ex.map_version == version + 1
    main = shown(ex.heatmap)[0]
    if contrast in ("gradient", "guided_backprop", "gradcam"):
        want = explainer.baseline(image, ex.target, contrast).values[0]
        np.testing.assert_allclose(main, want, rtol=1e-5, atol=1e-7)
    assert (ex.controls.class_b_picker.layout.display is None) == (contrast == "pairwise")


def test_a_baseline_shows_its_map_before_the_neuron_bars(ex, explainer, image):
    """The header's gradient map is published first, its state saying the bars are coming."""
    version, seen = ex.map_version, []
    ex.heatmap.observe(
        lambda c: seen.append((dict(c["new"]), shown(ex.heatmap)[0].copy())), "state"
    )
    other = (ex.target + 1) % len(NAMES)  # a target whose neuron-panel tree is not at hand
    ex.select(contrast="gradient", target=other)
    header = [(st, m) for st, m in seen if st.get("stage") == "neuron bars"]
    assert len(header) == 1
    state, main = header[0]
    assert state["contrast"] == "gradient" and state["map_version"] == version
    want = explainer.baseline(image, other, "gradient").values[0]
    np.testing.assert_allclose(main, want, rtol=1e-5, atol=1e-7)
    final = seen[-1][0]
    assert final["map_version"] == version + 1 and final["stage"] == ""
    assert len(ex.bars.channels) > 0  # the bars came after the map


def test_a_new_target_shows_its_contrast_map_first_and_costs_two_passes(ex, explainer, image):
    """Contrast pass -> map on screen; target pass -> bars (the dual is their difference)."""
    engine, passes, seen = explainer.engine, [0], []
    inner = engine._class_backprop

    def counted(*args, **kwargs):
        passes[0] += 1
        return inner(*args, **kwargs)

    ex.heatmap.observe(lambda c: seen.append(dict(c["new"])), "state")
    engine._class_backprop = counted
    try:
        ex.select(target=3)
    finally:
        del engine._class_backprop
    header = [st for st in seen if st.get("stage") == "neuron bars"]
    assert len(header) == 1 and header[0]["target"] == 3
    assert passes[0] == 2
    tree = explainer.explain(image, 3, layers=[ex.layer])
    np.testing.assert_allclose(
        shown(ex.heatmap)[0], tree["input"]["heatmap"].sel(kind="contrast").values[0], rtol=1e-5
    )
    want = tree["layers"][ex.layer]["neuron_relevance"].values[:, 0]
    np.testing.assert_allclose(
        ex.session.layer(ex.view)["neuron_relevance"].values, want, rtol=1e-4, atol=1e-7
    )


def test_pairwise_contrast_follows_class_b(ex, explainer, image):
    ex.select(contrast="pairwise", class_b=3)
    first = shown(ex.heatmap)[0].copy()
    update(ex.controls.class_b_picker, index=2)
    ex.wait()
    assert ex.class_b == 2
    tree = explainer.explain(image, ex.target, contrast=2, layers=["features.3"])
    np.testing.assert_allclose(
        shown(ex.heatmap)[0], tree["input"]["heatmap"].sel(kind="contrast").values[0], rtol=1e-5
    )
    assert not np.array_equal(first, shown(ex.heatmap)[0])
    assert "rather than square" in ex.heatmap.panel_titles[0]


def test_every_rules_preset_from_the_picker(ex):
    for i, rules in enumerate(RULES):
        update(ex.controls.rules_picker, index=i)
        ex.wait()
        assert ex.error == "" and ex.rules == rules and ex.heatmap.state["rules"] == rules


def test_neuron_bar_clicks_select_compare_and_deselect(ex, explainer, image):
    a, b = ex.bars.channels[0], ex.bars.channels[1]
    bar_click(ex.bars.bars, 0)
    ex.wait()
    assert ex.channels == [a] and ex.neuron_view.state["view"] == "single"
    cond = explainer.conditional(image, ex.target, "features.3", [a, b], contrast="clrp1")
    want_a, want_b = cond.values[0, 0], cond.values[1, 0]
    np.testing.assert_allclose(shown(ex.neuron_view)[0], want_a, rtol=1e-5, atol=1e-8)
    bar_click(ex.bars.bars, 1)
    ex.wait()
    assert ex.channels == [a, b] and ex.neuron_view.state["view"] == "compare"
    maps = shown(ex.neuron_view)
    assert maps.shape[0] == 3 and ex.neuron_view.panel_modes == ["", "", "signed"]
    np.testing.assert_allclose(maps[2], maps[0] - maps[1], rtol=1e-6, atol=1e-8)
    stats = compare(want_a, want_b)
    assert f"correlation {stats['correlation']:+.2f}" in ex.neuron_view.caption
    assert f"overlap of positive parts {stats['overlap']:.2f}" in ex.neuron_view.caption
    assert sorted(ex.bars.bars.selected) == [0, 1] and ex.thumbs.selected == [a, b]
    bar_click(ex.bars.bars, 0)  # clicking a selected bar deselects it
    ex.wait()
    assert ex.channels == [b] and ex.neuron_view.state["channels"] == [b]


def test_no_state_claims_a_neuron_view_before_its_maps_and_caption_arrive(ex, monkeypatch):
    """The front end sees the neuron view's maps, titles and caption in one message, and only
    then a state naming the view (a browser test read a stale caption under a compare state)."""
    sent: list[dict] = []

    def record(msg: dict, buffers=None) -> None:  # binary traits travel as buffers
        sent.append({**msg["state"], **{path[0]: "buffer" for path in msg["buffer_paths"]}})

    monkeypatch.setattr(ex.neuron_view, "_send", record)
    versions: list[int] = []
    ex.observe(lambda c: versions.append(c["new"]), "map_version")
    start = ex.map_version
    a, b = ex.bars.channels[0], ex.bars.channels[1]
    for i, view in ((0, "single"), (1, "compare")):
        sent.clear()
        bar_click(ex.bars.bars, i)
        ex.wait()
        maps_msgs = [m for m in sent if "maps" in m]
        assert len(maps_msgs) == 1 and {"caption", "panel_titles"} <= set(maps_msgs[0])
        states = [m["state"]["view"] for m in sent if "state" in m]
        assert states == [view]  # one state, after the maps
        assert next(i for i, m in enumerate(sent) if "state" in m) > sent.index(maps_msgs[0])
    assert versions == [start + 1, start + 2]  # one version per click, none half-way
    assert ex.neuron_view.caption.startswith(f"c{a} vs c{b} (conditional): correlation")


def test_thumbnail_and_pixel_neuron_clicks_select_channels(ex):
    c = ex.thumbs.channels[3]
    custom(ex.thumbs, {"event": "thumb", "channel": c})
    ex.wait()
    assert ex.channels == [c]
    y, x = np.unravel_index(np.argmax(shown(ex.heatmap)[0]), (32, 32))
    custom(ex.heatmap, {"event": "pixel", "y": int(y), "x": int(x)})
    ex.wait()
    listed = ex.heatmap.pixel_neurons[0]["channel"]
    custom(ex.heatmap, {"event": "neuron", "channel": listed})
    ex.wait()
    assert ex.channels == [c, listed] or (listed == c and ex.channels == [])


def test_pixel_click_lists_the_layers_most_relevant_channels(ex, explainer, image):
    custom(ex.heatmap, {"event": "pixel", "y": 20, "x": 7})
    ex.wait()
    assert ex.pixel == [20, 7] and ex.heatmap.pixel == [20, 7]
    assert ex.heatmap.state["pixel"] == [20, 7]
    tree = explainer.explain(image, ex.target, contrast="clrp1", layers=["features.3"])
    rel = tree["layers"]["features.3"]["relevance"].sel(kind="contrast").values[0]
    chans, values = neurons_at(rel, 20, 7, (32, 32))
    chans, values = chans[values > 0], values[values > 0]  # only channels arguing for the target
    got = ex.heatmap.pixel_neurons
    assert len(got) > 0
    assert [n["channel"] for n in got] == chans.tolist()
    assert [n["label"] for n in got] == [f"c{c}" for c in chans]
    np.testing.assert_allclose([n["value"] for n in got], values, rtol=1e-6)
    cy, cx = 20 * rel.shape[1] // 32, 7 * rel.shape[2] // 32  # the layer cell above the pixel
    around = rel[:, cy - 1 : cy + 2, cx - 1 : cx + 2].sum(axis=(1, 2))  # and its neighbours
    assert around.max() == pytest.approx(got[0]["value"], rel=1e-5)
    ex.select(layer="classifier.1")  # a linear layer has no pixels
    assert ex.heatmap.pixel_neurons == [] and "no spatial map" in ex.heatmap.neuron_list_title


def test_layer_picker_resets_channels_and_redraws_bars(ex):
    ex.select(channels=[1, 2])
    update(ex.controls.layer_picker, index=ex.layer_names.index("features.0"))
    ex.wait()
    assert ex.layer == "features.0" and ex.channels == []
    assert sorted(ex.bars.channels) == list(range(8))
    assert ex.neuron_view.state["view"] == "empty" and ex.thumbs.state["layer"] == "features.0"


def test_neuron_mode_shows_the_papers_neuron_explanation(ex, explainer, image):
    ex.select(channels=[5])
    update(ex.controls.mode_picker, index=1)
    ex.wait()
    assert ex.neuron_mode == "neuron" and ex.neuron_view.state["neuron_mode"] == "neuron"
    tree = explainer.neuron(image, "features.3", 5, contrast="layer")
    heat = tree["input"]["heatmap"]
    kind = "contrast" if "contrast" in heat["kind"].values else "target"
    np.testing.assert_allclose(shown(ex.neuron_view)[0], heat.sel(kind=kind).values[0], rtol=1e-5)


def test_rapid_clicks_show_only_the_last_request(ex, explainer, image):
    versions = []
    ex.observe(lambda ch: versions.append(ex.neuron_view.state.get("channels")), "map_version")
    channels = ex.bars.channels
    for i in range(8):  # no waiting: the clicks queue up like a user's rapid clicks
        bar_click(ex.bars.bars, i)
        bar_click(ex.bars.bars, i)  # and deselect again
    bar_click(ex.bars.bars, 9)
    ex.wait()
    assert ex.channels == [channels[9]]
    assert ex.neuron_view.state["channels"] == [channels[9]]
    want = explainer.conditional(image, ex.target, "features.3", [channels[9]]).values[0, 0]
    np.testing.assert_allclose(shown(ex.neuron_view)[0], want, rtol=1e-5, atol=1e-8)
    assert versions[-1] == [channels[9]]
    assert ex._runner.completed < ex._runner.latest  # superseded requests were dropped


def test_work_raises_the_busy_flag_and_lowers_it(ex):
    seen = []
    ex.heatmap.observe(lambda ch: seen.append(ch["new"]), "busy")
    ex.select(target=0)
    assert seen[0] is True and seen[-1] is False and not ex.busy


def test_labels_are_never_html(ex):
    ex.select(target=1)
    assert EVIL in ex.heatmap.panel_titles[0]  # as text, for textContent on the JS side
    assert ex.heatmap.state["target_name"] == EVIL

    def walk(widget):
        yield widget
        for child in getattr(widget, "children", ()):
            yield from walk(child)

    html = [x for x in walk(ex) if isinstance(x, (w.HTML, w.HTMLMath))]
    assert html == []  # no widget of the Explorer renders its value as HTML
    assert all(not getattr(x, "description_allow_html", False) for x in walk(ex))


def test_export_netcdf_round_trips_and_png_shows_the_panels(ex, tmp_path):
    ex.select(channels=[ex.bars.channels[0], ex.bars.channels[1]])
    path = ex.save_netcdf(tmp_path / "tree.nc")
    back = open_tree(path)
    tree = ex.session.tree(ex.view)
    np.testing.assert_array_equal(back["input"]["heatmap"].values, tree["input"]["heatmap"].values)
    assert "features.3" in back["layers"].children
    png = Image.open(ex.save_png(tmp_path / "maps.png"))
    assert png.size == (4 * 32 + 3 * 4, 32)  # decision map, A, B, A − B
    ex.controls.export_name.value = str(tmp_path / "via_button")
    ex.controls.png_button.click()
    ex.controls.netcdf_button.click()
    assert (tmp_path / "via_button.png").exists() and (tmp_path / "via_button.nc").exists()
    assert ex.controls.status.value.startswith("saved ")


def test_bad_choices_name_the_fix(ex):
    with pytest.raises(ConfigError, match="choose from"):
        ex.select(contrast="clrp3")
    with pytest.raises(ConfigError, match="choose from"):
        ex.select(layer="features.99")
    with pytest.raises(ConfigError, match="unknown class"):
        ex.select(target="hexagon")
    with pytest.raises(ConfigError, match="out of range"):
        ex.select(target=5)
    ex.select(target="square")
    assert ex.target == 2


def test_explorer_accepts_a_model_image_as_array_and_dataarray(explainer, image):
    import xarray as xr

    arr = xr.DataArray(image.numpy(), dims=("color", "y", "x"))
    a = Explorer(explainer, arr, contrast="lrp", layer="features.0", target=2).wait()
    b = Explorer(explainer, image.numpy(), contrast="lrp", layer="features.0", target=2).wait()
    assert a.heatmap.maps == b.heatmap.maps and a.heatmap.state["contrast"] == "lrp"
    with pytest.raises(cw.CLRPError, match="one image"):
        Explorer(explainer, [torch.rand(2, 3, 32, 32)])


def test_dataset_stats_add_the_class_mean_next_to_the_image_bars(explainer, image):
    import xarray as xr

    rng = np.random.default_rng(0)
    mean = rng.standard_normal((2, 2, 2, 24)).astype(np.float32)
    mean[:, :, 0, 8:] = np.nan  # features.0 has 8 channels: padded like neuron_stats does
    stats = xr.Dataset(
        {"mean": (("contrast", "class", "layer", "channel"), mean)},
        coords={
            "contrast": ["clrp1", "clrp2"],
            "class": [0, 2],
            "layer": ["features.0", "features.3"],
            "n_channels": ("layer", [8, 24]),
            "channel": np.arange(24),
        },
    )
    ex = Explorer(explainer, image, target=2, dataset_stats=stats).wait()
    assert list(ex.bars.bars.labels) == [
        "target",
        "dual",
        "contrast = target − dual",
        "data-set mean",
    ]
    y = np.asarray(ex.bars.bars.y)
    np.testing.assert_allclose(y[3], mean[0, 1, 1][ex.bars.channels], rtol=1e-6)
    ex.select(contrast="clrp2", layer="features.0")
    y = np.asarray(ex.bars.bars.y)
    np.testing.assert_allclose(y[3], mean[1, 1, 0, :8][ex.bars.channels], rtol=1e-6)
    ex.select(target=1)  # a class without data-set samples: no fourth bar
    assert list(ex.bars.bars.labels) == ["target", "dual", "contrast = target − dual"]


def test_demo_runs_offline_on_the_shipped_model():
    demo = cw.demo().wait()
    bundle = cw.load_model("shapes")
    assert isinstance(demo, Explorer) and demo.class_names == list(bundle.class_names)
    assert demo.heatmap.state["map_version"] == 1 and demo.heatmap.height == 64
    assert len(demo.thumbs.channels) == 12 and demo.error == ""
    assert demo.top5.classes[0] == demo.target
    demo.select(contrast="gradient")
    assert demo.heatmap.mode == "signed" and demo.neuron_view.mode == "signed"
    demo.select(contrast="clrp2")
    assert demo.heatmap.mode == "positive"
    photo = Image.fromarray(demo._image)  # a PIL image goes through the bundle's preprocess
    again = Explorer(bundle, photo, layer=demo.layer).wait()
    np.testing.assert_array_equal(again._image, demo._image)


def test_an_explainers_own_rules_are_kept_and_errors_keep_their_type(explainer, image):
    eps = cw.Explainer(explainer.model, rules="epsilon", input_bounds=(0.0, 1.0))
    ex = Explorer(eps, image).wait()
    assert ex.rules == "epsilon" and ex.session.explainer("epsilon") is eps
    assert ex.class_names[0] == "class 0"  # no class names: numbered
    with pytest.raises(cw.CLRPError, match="channel"):
        Explorer(eps, torch.rand(1, 32, 32)).wait()  # grey image for an RGB model
