"""Shareable notebooks in a real browser: the exported HTML renders its widgets with no network at
all (file://, every http(s) request aborted), labels stay text, and Voilà serves the quickstart.

Screenshots land in ``build/test-artifacts/export_*.png`` and ``voila_quickstart.png``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from conftest import serve

from clrp_widgets.export import export_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
QUICKSTART = NOTEBOOKS / "quickstart.ipynb"
ARTIFACTS = ROOT / "build" / "test-artifacts"
HOSTILE = "<img src=x onerror=alert(1)>"
RENDER_TIMEOUT_MS = 60_000

HOSTILE_CELLS = [
    "import bqplot as bq\n"
    "import ipywidgets as w\n"
    "import clrp_widgets as cw\n"
    f"HOSTILE = {HOSTILE!r}",
    "bundle = cw.load_model('shapes')\n"
    "images, labels, boxes = cw.scenes(1, seed=3)\n"
    "names = [f'{HOSTILE} {name}' for name in bundle.class_names]\n"
    "cw.Explorer(cw.Explainer(bundle, class_names=names), images[0])",
    "x, y = bq.OrdinalScale(), bq.LinearScale()\n"
    "bars = bq.Bars(x=[HOSTILE, 'plain'], y=[2.0, 1.0], scales={'x': x, 'y': y})\n"
    "bq.Figure(marks=[bars], axes=[bq.Axis(scale=x), bq.Axis(scale=y, side='left')],\n"
    "          layout={'height': '240px'})",
    "w.IntSlider(value=3, description=HOSTILE)",
]


@dataclass
class PageLog:
    """What a page did: network requests, uncaught errors and dialogs (alert, confirm...)."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def _watch(page, *, block=lambda url: True) -> PageLog:
    log = PageLog()
    page.on("pageerror", lambda err: log.errors.append(str(err)))

    def on_dialog(dialog):
        log.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)

    def on_route(route):
        log.requests.append(route.request.url)
        if block(route.request.url):
            route.abort()
        else:
            route.continue_()

    page.route("http*://**", on_route)
    return log


def _wait_for_widgets(page) -> None:
    """Every saved widget view is displayed and every ``data-ready`` element has drawn."""
    page.wait_for_selector("[data-ready='1']", timeout=RENDER_TIMEOUT_MS)
    page.wait_for_function(
        """() => {
          const views = document.querySelectorAll(
            "script[type='application/vnd.jupyter.widget-view+json']").length;
          const shown = document.querySelectorAll('.widget-subarea').length;
          const pending = document.querySelectorAll("[data-ready]:not([data-ready='1'])").length;
          return views > 0 && shown === views && pending === 0;
        }""",
        timeout=RENDER_TIMEOUT_MS,
    )


def _widget_text(page) -> str:
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('.widget-subarea'))"
        ".map(e => e.textContent).join('\\n')"
    )


def _icon_font_states(page) -> list[str]:
    """Load states of the Font Awesome faces (the html-manager's icons, inlined as data URLs)."""
    return page.evaluate(
        """async () => {
          await document.fonts.ready;
          return Array.from(document.fonts)
            .filter(f => f.family.includes('Font Awesome')).map(f => f.status);
        }"""
    )


def _open_offline(page, html: Path, screenshot: str) -> PageLog:
    log = _watch(page)
    page.set_viewport_size({"width": 1280, "height": 1600})
    page.goto(html.as_uri())
    _wait_for_widgets(page)
    page.wait_for_timeout(500)  # let late scripts (fonts, resize handlers) run before asserting
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
    return log


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Export a notebook (executed in a copy of ``notebooks/``) once per module; cached by name."""
    out = tmp_path_factory.mktemp("export")
    work = out / "notebooks"
    shutil.copytree(NOTEBOOKS, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    cache: dict[str, Path] = {}

    def export(name: str, cells: list[str] | None = None) -> Path:
        if name not in cache:
            notebook = work / f"{name}.ipynb"
            if cells is not None:
                nb = nbformat.v4.new_notebook()
                nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
                nbformat.write(nb, notebook)
            cache[name] = export_notebook(notebook, out / f"{name}.html")
        return cache[name]

    return export


@pytest.mark.skipif(not QUICKSTART.exists(), reason="notebooks/quickstart.ipynb is not there yet")
def test_exported_quickstart_renders_with_no_network(exported, page):
    log = _open_offline(page, exported("quickstart"), "export_offline_quickstart.png")
    assert log.requests == [], "the page tried the network"
    assert log.errors == []
    assert page.locator("[data-ready='1']").count() >= 1
    assert page.locator(".bqplot rect.bar").count() > 0, "no bqplot bars drawn"
    fonts = _icon_font_states(page)  # the Explorer's buttons show icons
    assert "loaded" in fonts and "error" not in fonts, fonts


def _snapshot_bytes(html: Path) -> int:
    """Bytes of the embedded snapshot maps (base64-decoded) in an exported page's widget state."""
    text = html.read_text(encoding="utf-8")
    start = text.index('<script type="application/vnd.jupyter.widget-state+json">')
    body = text[text.index(">", start) + 1 : text.index("</script>", start)]
    state = json.loads(body)["state"]
    return sum(
        len(base64.b64decode(b["data"]))
        for model in state.values()
        for b in model.get("buffers", [])
        if b["path"] == ["snapshot_maps"]
    )


@pytest.mark.skipif(not QUICKSTART.exists(), reason="notebooks/quickstart.ipynb is not there yet")
def test_exported_quickstart_is_an_interactive_snapshot(exported, page):
    """No kernel, no network: bar and thumbnail clicks still change the neuron view."""
    html = exported("quickstart")
    log = _open_offline(page, html, "export_snapshot_before.png")
    assert 0 < _snapshot_bytes(html) <= 2_000_000
    ex = page.locator(".clrp-explorer").first
    banner = ex.locator(".clrp-snapshot-banner")
    assert banner.count() == 1 and "snapshot" in banner.inner_text().lower()
    # controls that need a kernel are disabled and say why
    pickers = ex.locator("select")
    assert pickers.count() >= 2
    for i in range(pickers.count()):
        assert pickers.nth(i).is_disabled()
        assert "kernel" in pickers.nth(i).get_attribute("title")
    view = ex.locator(".clrp-neuron-view .clrp-heatmap")
    canvas = (
        "() => [...document.querySelectorAll('.clrp-neuron-view canvas')].map(c => c.toDataURL())"
    )
    before = page.evaluate(canvas)
    ex.locator(".clrp-thumbnails .clrp-thumb").nth(1).click()
    ex.locator(".clrp-neuron-view .clrp-heatmap[data-snapshot-version='1']").wait_for(
        timeout=10_000
    )
    after_thumb = page.evaluate(canvas)
    assert after_thumb != before
    thumb = int(ex.locator(".clrp-thumbnails .clrp-thumb").nth(1).get_attribute("data-channel"))
    assert thumb in json.loads(view.get_attribute("data-channels"))
    ex.locator(".clrp-neuron-bars .bargroup").nth(0).locator("rect.bar").first.click()
    ex.locator(".clrp-neuron-view .clrp-heatmap[data-snapshot-version='2']").wait_for(
        timeout=10_000
    )
    assert page.evaluate(canvas) != after_thumb
    assert len(json.loads(view.get_attribute("data-channels"))) in (1, 2)
    ex.screenshot(path=str(ARTIFACTS / "export_snapshot_clicked.png"))
    assert log.requests == [], "the page tried the network"
    assert log.errors == []


def test_exported_widgets_render_offline_and_labels_stay_text(exported, page):
    log = _open_offline(page, exported("hostile", HOSTILE_CELLS), "export_offline_hostile.png")
    assert log.requests == [], "the page tried the network"
    assert log.errors == []
    assert log.dialogs == [], "a label was run as HTML"
    assert page.locator("img[src='x']").count() == 0
    assert page.locator(".widget-slider, .widget-hslider").count() == 1
    assert page.locator(".bqplot rect.bar").count() > 2
    text = _widget_text(page)
    assert HOSTILE in text, "the class name is not shown as text"


@pytest.fixture(scope="module")
def voila_quickstart(tmp_path_factory):
    """Voilà serving a copy of the quickstart on 127.0.0.1; yields its address."""
    tmp = tmp_path_factory.mktemp("voila")
    work = tmp / "notebooks"
    shutil.copytree(NOTEBOOKS, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    env = dict(os.environ)
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR"):
        env[var] = str(tmp / var.lower())

    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "voila",
            str(work / QUICKSTART.name),
            "--no-browser",
            "--Voila.ip=127.0.0.1",
            f"--port={port}",
        ]

    ready, log_path = "voila/static/voila.js", tmp / "voila.log"
    with serve(command, ready=ready, log_path=log_path, env=env, cwd=work, timeout=60) as base:
        yield base


@pytest.mark.skipif(not QUICKSTART.exists(), reason="notebooks/quickstart.ipynb is not there yet")
def test_voila_serves_the_quickstart(voila_quickstart, page):
    log = _watch(page, block=lambda url: not url.startswith(voila_quickstart))
    page.set_viewport_size({"width": 1280, "height": 1600})
    page.goto(voila_quickstart, timeout=120_000)
    page.wait_for_selector("[data-ready='1']", timeout=120_000)
    page.wait_for_function(
        "() => document.querySelectorAll(\"[data-ready]:not([data-ready='1'])\").length === 0",
        timeout=RENDER_TIMEOUT_MS,
    )
    page.wait_for_timeout(500)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "voila_quickstart.png"), full_page=True)
    assert log.errors == []
    assert page.locator(".bqplot rect.bar").count() > 0
    outside = [url for url in log.requests if not url.startswith(voila_quickstart)]
    # Voilà's own page template links Font Awesome from a CDN (toolbar icons); nothing else
    assert all("fontawesome" in url for url in outside), outside


NEURON_ATLAS = NOTEBOOKS / "neuron_atlas.ipynb"
ATLAS_TITLE = r"neuron atlas: (\S+) channel (\d+), references for (\S+)"


@pytest.mark.skipif(not NEURON_ATLAS.exists(), reason="notebooks/neuron_atlas.ipynb is not there")
def test_exported_atlas_holds_the_selected_neurons_references(exported, page):
    """The atlas notebook's Explorer (a neuron selected) exported: offline, the panel shows that
    neuron's references (the samples the store ranks top, each tile a drawn picture) and its
    sub-neurons, as saved."""
    import re

    import clrp_widgets as cw
    from clrp_widgets.scale import reference_samples

    html = exported("neuron_atlas")
    log = _open_offline(page, html, "export_offline_neuron_atlas.png")
    assert log.requests == [] and log.errors == []
    atlas = page.locator(".clrp-atlas").first
    atlas.locator(".clrp-atlas-ref img").first.wait_for(timeout=RENDER_TIMEOUT_MS)
    layer, channel, name = re.search(ATLAS_TITLE, atlas.inner_text()).groups()
    names = cw.load_model("shapes").class_names
    store = html.parent / "notebooks" / "atlas.zarr"  # written when the notebook was executed
    refs = reference_samples(store, layer, int(channel), target=names.index(name), k=8)
    labels = [t.split() for t in atlas.locator(".clrp-atlas-ref .widget-label").all_inner_texts()]
    want = [
        [f"#{int(s)}", f"{float(v):+.3g}"]
        for s, v in zip(refs["sample"].values, refs["score"].values, strict=True)
    ]
    assert want and labels == want
    sizes = atlas.locator(".clrp-atlas-ref img").evaluate_all(
        "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert sizes == [[True, 96, 96]] * len(want)
    assert atlas.locator(".clrp-atlas-sub").count() == 5
    assert atlas.locator(".clrp-atlas-crumb").all_inner_texts() == [f"{layer}:{channel}"]
    atlas.screenshot(path=str(ARTIFACTS / "export_offline_atlas.png"))


VIT_CELLS = [
    "import clrp_widgets as cw\n"
    "ex = cw.Explorer(cw.load_model('shapes_vit'), cw.scenes(2, seed=5))\n"
    "ex.select(layer='encoder.layers.encoder_layer_2.mlp.0')\n"
    "ex",
]


def test_exported_vit_explorer_shows_a_units_patch_grid_offline(exported, page):
    """A ViT's Explorer exported: offline, a thumbnail click shows the unit's input map and, as
    in the notebook, its relevance at the layer on the patch grid."""
    html = exported("vit_explorer", VIT_CELLS)
    log = _open_offline(page, html, "export_offline_vit.png")
    ex = page.locator(".clrp-explorer").first
    ex.locator(".clrp-thumbnails .clrp-thumb").first.wait_for(timeout=RENDER_TIMEOUT_MS)
    thumb = ex.locator(".clrp-thumbnails .clrp-thumb").nth(1)
    channel = int(thumb.get_attribute("data-channel"))
    thumb.click()
    view = ex.locator(".clrp-neuron-view .clrp-heatmap[data-snapshot-version='1']")
    view.wait_for(timeout=10_000)
    assert json.loads(view.get_attribute("data-channels")) == [channel]
    assert view.get_attribute("data-panels") == "2"
    titles = view.locator("figcaption").all_inner_texts()
    assert titles[0].startswith(f"unit {channel} (")
    assert titles[1].startswith(f"unit {channel} at the layer, 8×8 patch grid, class token")
    ex.screenshot(path=str(ARTIFACTS / "export_offline_vit_grid.png"))
    ex.locator(".clrp-thumbnails .clrp-thumb").nth(2).click()  # a second unit: compare, no grid
    compared = ex.locator(".clrp-neuron-view .clrp-heatmap[data-snapshot-version='2']")
    compared.wait_for(timeout=10_000)
    assert compared.get_attribute("data-panels") == "3"
    assert log.requests == [], "the page tried the network"
    assert log.errors == []
