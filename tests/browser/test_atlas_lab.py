"""The Explorer's neuron atlas in real JupyterLab + chromium: clicking a neuron bar shows its
reference samples (with their conditional maps) and its sub-neurons; the ranking switches;
clicking a sub-neuron descends and the breadcrumb goes back up. Every step is checked in the DOM
and against the kernel (an observer appends the panel's state as JSON lines to a file), and the
expected references and sub-neurons are computed here, independently, from the same store.

The store is written by ``cw.scale.explain_dataset`` (a real dask LocalCluster, a real zarr
store) in this test process. Screenshots land in ``build/test-artifacts/atlas_*.png``.
"""

from __future__ import annotations

import functools
import io
import time

import nbformat
import numpy as np
import pytest
from conftest import ARTIFACTS, kernel_state
from PIL import Image

import clrp_widgets as cw
from clrp_widgets.scale import explain_dataset, reference_samples

pytestmark = pytest.mark.browser
_kernel_state = functools.partial(kernel_state, timeout=60.0)

LAYER, BELOW, SEED, N_SCENES = "features.11", "features.10", 5, 10
SETUP = """
import json, pathlib
import numpy as np
import clrp_widgets as cw
bundle = cw.load_model("shapes")
scenes = cw.scenes({n}, seed={seed})
target = int(np.flatnonzero(scenes.labels.values[0])[0])
explorer = cw.Explorer(bundle, scenes.tensor()[0], target=target, layer={layer!r},
                       atlas={store!r}, data=scenes, display_size=160)
explorer.add_class("under-test")
panel = explorer.atlas
_log = pathlib.Path("atlas_state.jsonl")

def _record(change=None):
    state = {{
        "channels": explorer.channels, "target": panel.target, "by": panel.by.value,
        "path": panel.path, "references": panel.references, "sub_neurons": panel.sub_neurons,
        "tiles": len(panel.refs_box.children),
    }}
    with _log.open("a") as f:
        f.write(json.dumps(state) + "\\n")

panel.subs_box.observe(_record, names="children")  # the last part a redraw fills
_record()
explorer
"""
# every reference tile's picture has loaded, with its size and a fingerprint of its pixels
TILE_IMAGES = """() => [...document.querySelectorAll('.under-test .clrp-atlas-ref img')].map(
  (img) => ({ done: img.complete, w: img.naturalWidth, h: img.naturalHeight, src: img.src }))"""


@pytest.fixture(scope="module")
def atlas_store(lab_server):
    """A small store of the shipped model on generated scenes, next to the notebook."""
    bundle, scenes = cw.load_model("shapes"), cw.scenes(N_SCENES, seed=SEED)
    store = lab_server.root / "atlas.zarr"
    explain_dataset(bundle, scenes, store, chunk=8, progress=False, n_workers=1)
    target = int(np.flatnonzero(scenes.labels.values[0])[0])
    return bundle, scenes, store, target


@pytest.fixture(scope="module")
def lab(lab_server, atlas_store, browser):
    """JupyterLab running the atlas notebook, the Explorer drawn, no neuron selected yet."""
    store = atlas_store[2]
    nb = nbformat.v4.new_notebook()
    setup = SETUP.format(n=N_SCENES, seed=SEED, layer=LAYER, store=store.name)
    nb.cells = [nbformat.v4.new_code_cell(setup)]
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["kernelspec"] = kernel
    nbformat.write(nb, lab_server.root / "atlas.ipynb")
    context = browser.new_context(viewport={"width": 1400, "height": 2200})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"{e}\n{e.stack}"[:600]))
    lab_server.run_all(page, "atlas.ipynb")
    page.locator(".under-test .clrp-main-map .clrp-heatmap[data-ready='1']").wait_for(
        timeout=120_000
    )
    page.locator(".under-test .clrp-neuron-bars rect.bar").first.wait_for(timeout=60_000)
    page.evaluate(
        "() => { const s = window.jupyterapp.shell; if (!s.leftCollapsed) s.collapseLeft(); }"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield page, lab_server.root / "atlas_state.jsonl", errors
    context.close()


def _shown_references(page) -> list[tuple[int, str]]:
    """(sample, score text) of every reference tile, in the order shown."""
    labels = page.locator(".under-test .clrp-atlas-ref .widget-label").all_inner_texts()
    pairs = [label.split() for label in labels]
    return [(int(sample.lstrip("#")), score) for sample, score in pairs]


def _expect_references(page, store, layer, channel, by, target) -> list[int]:
    """The DOM shows the top-k the store gives for (layer, channel, by, target); each tile has
    a drawn picture. Returns the samples."""
    refs = reference_samples(store, layer, channel, by=by, target=target, k=8)
    pairs = zip(refs["sample"].values, refs["score"].values, strict=True)
    want = [(int(s), f"{float(v):+.3g}") for s, v in pairs]
    assert want, "the store has no references for this neuron: the test would prove nothing"
    deadline = time.monotonic() + 30
    while _shown_references(page) != want and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _shown_references(page) == want
    images = page.evaluate(TILE_IMAGES)
    deadline = time.monotonic() + 30
    while not all(i["done"] and i["w"] > 0 for i in images) and time.monotonic() < deadline:
        time.sleep(0.1)
        images = page.evaluate(TILE_IMAGES)
    assert len(images) == len(want) and all(i["done"] and i["w"] > 0 for i in images)
    return [s for s, _ in want]


def _sub_neuron_labels(atlas) -> list[str]:
    return [t.split()[0] for t in atlas.locator(".clrp-atlas-sub").all_inner_texts()]


def _tile_pixels(page) -> list[np.ndarray]:
    """The decoded PNGs of the reference tiles (blob or data URLs, fetched in the page)."""
    blobs = page.evaluate(
        """async () => Promise.all(
          [...document.querySelectorAll('.under-test .clrp-atlas-ref img')].map(async (img) => {
            const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
            return Array.from(bytes);
          }))"""
    )
    return [np.asarray(Image.open(io.BytesIO(bytes(b))).convert("RGB")) for b in blobs]


def test_clicking_a_neuron_shows_references_and_sub_neurons(lab, atlas_store):
    page, log, errors = lab
    bundle, scenes, store, target = atlas_store
    atlas = page.locator(".under-test .clrp-atlas")
    assert "select a neuron" in atlas.inner_text()
    assert atlas.locator(".clrp-atlas-ref").count() == 0

    # 1. click a neuron bar: its references (contrastive) and sub-neurons appear
    page.locator(".under-test .clrp-neuron-bars .bargroup").nth(1).locator(
        "rect.bar"
    ).first.dispatch_event("click")
    state = _kernel_state(log, lambda s: len(s["channels"]) == 1 and len(s["path"]) == 1)
    channel = state["channels"][0]
    assert state["path"] == [[LAYER, channel]] and state["target"] == target
    assert state["by"] == "contrast"
    shown = _expect_references(page, store, LAYER, channel, "contrast", target)
    assert state["references"] == shown and state["tiles"] == len(shown)
    atlas.screenshot(path=str(ARTIFACTS / "atlas_selected.png"))
    title = atlas.locator(".widget-html").first.inner_text()
    assert f"{LAYER} channel {channel}" in title
    # the tiles are conditional maps: coloured (a heatmap over the grey-tinted image), not blank
    for rgb in _tile_pixels(page):
        assert rgb.shape[:2] == (96, 96)  # uniform square tiles
        assert np.ptp(rgb.astype(int), axis=(0, 1)).max() > 50
    parts = cw.Explainer(bundle).decompose(scenes.tensor()[:1], target, LAYER, channel, k=5)
    subs = [int(c) for c in parts["channel"].values]
    assert state["sub_neurons"] == [[BELOW, c] for c in subs]
    buttons = atlas.locator(".clrp-atlas-sub")
    assert [t.split()[0] for t in buttons.all_inner_texts()] == [f"{BELOW}:{c}" for c in subs]
    atlas.screenshot(path=str(ARTIFACTS / "atlas_selected.png"))

    # 2. switch the ranking to relevance, then activation: the references follow
    for label, by in (("relevance", "relevance"), ("activation", "activation")):
        atlas.locator(".widget-toggle-button", has_text=label).click()
        state = _kernel_state(log, lambda s, by=by: s["by"] == by)
        shown = _expect_references(page, store, LAYER, channel, by, target)
        assert state["references"] == shown
        assert f"by {by}" in atlas.inner_text()
    atlas.screenshot(path=str(ARTIFACTS / "atlas_by_activation.png"))

    # 3. click the first sub-neuron: it descends (references of the neuron below)
    buttons.first.click()
    state = _kernel_state(log, lambda s: len(s["path"]) == 2)
    assert state["path"] == [[LAYER, channel], [BELOW, subs[0]]]
    shown = _expect_references(page, store, BELOW, subs[0], "activation", target)
    assert state["references"] == shown
    crumbs = atlas.locator(".clrp-atlas-crumb")
    assert crumbs.all_inner_texts() == [f"{LAYER}:{channel}", f"{BELOW}:{subs[0]}"]
    assert state["sub_neurons"] and all(layer == "features.6" for layer, _ in state["sub_neurons"])
    atlas.screenshot(path=str(ARTIFACTS / "atlas_descended.png"))

    # 4. the breadcrumb goes back up
    crumbs.first.click()
    state = _kernel_state(log, lambda s: len(s["path"]) == 1)
    assert state["path"] == [[LAYER, channel]]
    shown = _expect_references(page, store, LAYER, channel, "activation", target)
    assert state["references"] == shown
    want = [f"{BELOW}:{c}" for c in subs]  # the DOM follows the kernel's state: wait for it
    deadline = time.monotonic() + 30
    while (crumbs.count(), _sub_neuron_labels(atlas)) != (1, want) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert crumbs.count() == 1
    assert _sub_neuron_labels(atlas) == want
    page.locator(".under-test").screenshot(path=str(ARTIFACTS / "atlas_explorer.png"))
    assert errors == []
