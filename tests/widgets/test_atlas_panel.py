"""The Explorer's neuron atlas panel, driven as the browser drives it (simulated messages)."""

from __future__ import annotations

import io
import threading

import ipywidgets as w
import numpy as np
import pytest
import traitlets as t
from PIL import Image
from widget_messages import custom, update

import clrp_widgets as cw
from clrp_widgets.engine.errors import ConfigError
from clrp_widgets.scale import explain_dataset, reference_samples
from clrp_widgets.widgets.atlas import MIN_CROP, TILE, square_around
from clrp_widgets.widgets.runner import Job, LatestRunner

LAYER = "features.11"


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    bundle, scenes = cw.load_model("shapes"), cw.scenes(10, seed=5)
    store = tmp_path_factory.mktemp("atlas") / "shapes.zarr"
    explain_dataset(bundle, scenes, store, chunk=8, progress=False, n_workers=1)
    return bundle, scenes, store


@pytest.fixture
def explorer(atlas):
    bundle, scenes, store = atlas
    target = int(np.flatnonzero(scenes.labels.values[0])[0])
    return cw.Explorer(
        bundle, scenes.tensor()[0], target=target, layer=LAYER, atlas=store, data=scenes
    ).wait()


def click(button) -> None:
    custom(button, {"event": "click"})


def test_selecting_a_neuron_shows_its_references_and_sub_neurons(explorer, atlas):
    bundle, scenes, store = atlas
    panel = explorer.atlas
    assert panel.path == [] and panel.references == [] and "select a neuron" in panel.title.value
    target = explorer.target
    explorer.select(channels=[7])
    assert panel.path == [(LAYER, 7)]
    refs = reference_samples(store, LAYER, 7, by="contrast", target=target, k=8)
    assert panel.references == list(refs["sample"].values) and len(panel.references) > 0
    tiles = panel.refs_box.children
    assert len(tiles) == len(panel.references)
    for tile, score in zip(tiles, refs["score"].values, strict=True):
        assert "clrp-atlas-ref" in tile._dom_classes
        image, label = tile.children
        picture = Image.open(io.BytesIO(image.value))
        assert picture.format == "PNG" and picture.size == (TILE, TILE)  # uniform square tiles
        assert f"{float(score):+.3g}" in label.value
    parts = cw.Explainer(bundle).decompose(scenes.tensor()[:1], target, LAYER, 7, k=5)
    assert panel.sub_neurons == [("features.10", int(c)) for c in parts["channel"].values]
    assert [b.description.split()[0] for b in panel.subs_box.children] == [
        f"features.10:{int(c)}" for c in parts["channel"].values
    ]
    assert "clrp-atlas" in panel._dom_classes


def test_ranking_switch_sub_neuron_descent_and_breadcrumb(explorer, atlas):
    _, _, store = atlas
    panel, target = explorer.atlas, explorer.target
    explorer.select(channels=[7])
    update(panel.by, index=2)  # the "activation" toggle, as the front end sets it
    assert panel.by.value == "activation"
    by_act = reference_samples(store, LAYER, 7, by="activation", target=target, k=8)
    assert panel.references == list(by_act["sample"].values)
    assert "by activation" in panel.message.value
    first = panel.sub_neurons[0]
    click(panel.subs_box.children[0])
    assert panel.path == [(LAYER, 7), first]
    below = reference_samples(store, first[0], first[1], by="activation", target=target, k=8)
    assert panel.references == list(below["sample"].values)
    assert [b.description for b in panel.crumb_buttons()] == [
        f"{LAYER}:7",
        f"{first[0]}:{first[1]}",
    ]
    assert panel.sub_neurons and panel.sub_neurons[0][0] == "features.6"
    click(panel.crumb_buttons()[0])  # back up
    assert panel.path == [(LAYER, 7)]
    assert panel.references == list(by_act["sample"].values)


def test_the_panel_follows_the_target_and_the_layer(explorer, atlas):
    _, scenes, store = atlas
    panel = explorer.atlas
    explorer.select(channels=[3])
    other = int(np.flatnonzero(scenes.labels.values[0])[1])
    explorer.select(target=other)
    assert panel.target == other
    refs = reference_samples(store, LAYER, 3, target=other, k=8)
    assert panel.references == list(refs["sample"].values)
    assert set(refs["target"].values) <= {other}
    explorer.select(layer="features.8")  # a new layer clears the selection
    assert panel.path == [] and panel.references == []


def test_the_worker_changes_widgets_only_inside_publish(atlas, monkeypatch):
    """Every synced change the worker makes, the atlas's included, runs inside ``Job.publish``
    (or the runner's busy callback, under the same lock): never a half-drawn view."""
    inside = threading.local()

    def marked(method):
        def run(*args, **kwargs):
            was, inside.on = getattr(inside, "on", False), True
            try:
                return method(*args, **kwargs)
            finally:
                inside.on = was

        return run

    stray: list[tuple[str, str]] = []

    def check(what: str) -> None:
        if threading.current_thread().name == "clrp-runner" and not getattr(inside, "on", False):
            stray.append((what, threading.current_thread().name))

    def watch(widget) -> None:
        def changed(change):
            check(f"{type(widget).__name__}.{change['name']}")

        widget.observe(changed, names=t.All)

    monkeypatch.setattr(Job, "publish", marked(Job.publish))
    monkeypatch.setattr(LatestRunner, "__init__", _busy_marked(marked))
    monkeypatch.setattr(w.Widget, "_widget_construction_callback", None)
    made: list = []
    w.Widget.on_widget_constructed(made.append)
    bundle, scenes, store = atlas
    explorer = cw.Explorer(bundle, scenes.tensor()[:2], layer=LAYER, atlas=store, data=scenes)
    for widget in made:
        watch(widget)
    w.Widget.on_widget_constructed(lambda widget: (check(type(widget).__name__), watch(widget)))
    explorer.wait()
    other = int(np.flatnonzero(scenes.labels.values[0])[-1])
    for request in [
        {"channels": [7]},
        {"channels": [7, 3]},
        {"target": other},
        {"contrast": "pairwise"},
        {"layer": "features.8"},
        {"image": 1},
        {"channels": [2]},
    ]:
        explorer.select(**request)
    assert explorer.atlas.path == [("features.8", 2)] and explorer.atlas.references
    assert stray == []


def _busy_marked(marked):
    init = LatestRunner.__init__

    def __init__(self, on_busy, on_error):
        init(self, marked(on_busy), on_error)

    return __init__


def test_atlas_needs_the_stores_data(atlas):
    bundle, scenes, store = atlas
    with pytest.raises(ConfigError, match="atlas needs data"):
        cw.Explorer(bundle, scenes.tensor()[0], atlas=store)
    with pytest.raises(ConfigError, match="not the data the store"):
        cw.Explorer(bundle, scenes.tensor()[0], atlas=store, data=cw.scenes(10, seed=6))


@pytest.mark.parametrize(
    ("box", "size", "square"),
    [
        ((10, 20, 30, 28), (64, 64), (10, 14, 30, 34)),  # centred on the box, its larger side
        ((0, 0, 40, 4), (64, 64), (0, 0, 40, 40)),  # shifted inside at the corner
        ((60, 60, 64, 64), (64, 64), (64 - MIN_CROP, 64 - MIN_CROP, 64, 64)),  # tiny: MIN_CROP
        ((0, 0, 30, 50), (30, 50), (0, 10, 30, 40)),  # larger than the image's short side
    ],
)
def test_reference_tiles_are_squares_around_the_crop(box, size, square):
    y0, x0, y1, x1 = square_around(list(box), size)
    assert (y0, x0, y1, x1) == square
    assert y1 - y0 == x1 - x0 and 0 <= y0 and 0 <= x0 and y1 <= size[0] and x1 <= size[1]
