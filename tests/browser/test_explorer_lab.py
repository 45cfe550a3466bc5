"""The quickstart's Explorer in real JupyterLab + chromium: clicks change the DOM and the kernel.

The notebook is a copy of ``notebooks/quickstart.ipynb`` plus two cells: an observer that appends
the Explorer's kernel-side state as JSON lines to a file on every new map or pixel (and saves the
map buffers it sends to the browser, with its input image), and a second Explorer whose class
name is hostile HTML. The saved buffers of the views reached by clicks must equal what
``cw.Explainer`` computes for those views in this test's own process (issue 21). Screenshots go
to ``build/test-artifacts/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from conftest import ARTIFACTS, kernel_state

import clrp_widgets as cw

pytestmark = pytest.mark.browser

QUICKSTART = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"
EVIL = "<img src=x onerror=alert(1)>"
OBSERVER = """
import json, pathlib
import numpy as np
from clrp_widgets.widgets.maps import neurons_at
explorer.add_class("under-test")
explorer.wait()  # the Explorer displays at once and fills in; record from its first view on
_log = pathlib.Path("explorer_state.jsonl")
_keys = ("target", "contrast", "rules", "layer", "channels", "pixel", "neuron_mode", "map_version")

def _record(change=None):
    state = {k: getattr(explorer, k) for k in _keys}
    size = explorer.heatmap.height, explorer.heatmap.width
    rel = explorer.session.layer(explorer.view)["relevance"].sel(kind="contrast").values
    listing = [(float(neurons_at(rel, *p, size)[1][0]), p) for p in np.ndindex(size)]
    state["peak"] = [int(i) for i in max(listing)[1]]  # a pixel with a neuron list
    state["size"] = list(size)
    state["bars"] = explorer.bars.channels
    _shown = lambda v: np.frombuffer(v.maps, np.float32).reshape(-1, v.height, v.width)
    np.savez(
        f"explorer_maps_{explorer.map_version}.npz",
        main=_shown(explorer.heatmap),
        neurons=_shown(explorer.neuron_view),
        x=explorer.images.xs[explorer.image].numpy(),
    )
    with _log.open("a") as f:
        f.write(json.dumps(state) + "\\n")

explorer.observe(_record, names=["map_version", "pixel"])
_record()
"""
HOSTILE = f"""
names = list(bundle.class_names)
names[objects[0]] = {EVIL!r}  # a class the model finds, so it is in the top-5 too
hostile = cw.Explainer(bundle, class_names=names)
hostile_explorer = cw.Explorer(hostile, image, target=objects[0])
hostile_explorer.add_class("hostile")
hostile_explorer
"""
RAPID_CLICKS = """() => {
  const groups = document.querySelectorAll(".under-test .clrp-neuron-bars .bargroup");
  for (const i of [7, 8, 9, 10]) {
    groups[i].querySelector("rect.bar").dispatchEvent(new MouseEvent("click", { bubbles: true }));
  }
}"""


def _data(locator, key: str):
    return json.loads(locator.get_attribute(f"data-{key}"))


def _assert_shown_is_computed(root: Path, state: dict) -> None:
    """The map buffers the kernel sent for ``state``'s view equal an independent
    ``cw.Explainer`` computation of that view (decision map, selected channels' maps, A - B)."""
    saved = np.load(root / f"explorer_maps_{state['map_version']}.npz")
    x = torch.as_tensor(saved["x"])
    ex = cw.Explainer(cw.load_model("shapes"))
    target, contrast, layer = state["target"], state["contrast"], state["layer"]
    tree = ex.explain(x, target, contrast=contrast, layers=[layer])
    kind = "target" if contrast == "lrp" else "contrast"
    want = tree["input"]["heatmap"].sel(kind=kind).values[0]
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(saved["main"][0], want, rtol=1e-4, atol=1e-5 * scale)
    channels = state["channels"]
    if channels:
        cond = ex.conditional(x, target, layer, channels, contrast=contrast)
        maps = [cond.sel(channel=c).values[0] for c in channels]
        if len(maps) == 2:
            maps.append(maps[0] - maps[1])
        for got, m in zip(saved["neurons"], maps, strict=True):
            np.testing.assert_allclose(got, m, rtol=1e-4, atol=1e-5 * float(np.abs(m).max()))


def test_explorer_clicks_in_jupyterlab(lab_server, page):
    nb = nbformat.read(QUICKSTART, as_version=4)
    nb.cells += [nbformat.v4.new_code_cell(OBSERVER), nbformat.v4.new_code_cell(HOSTILE)]
    nbformat.write(nb, lab_server.root / "quickstart.ipynb")
    log = lab_server.root / "explorer_state.jsonl"
    dialogs: list[str] = []
    errors: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_viewport_size({"width": 1400, "height": 2000})
    lab_server.run_all(page, "quickstart.ipynb")

    ut = page.locator(".under-test")
    main = ut.locator(".clrp-main-map .clrp-heatmap[data-ready='1']")
    neurons = ut.locator(".clrp-neuron-view .clrp-heatmap[data-ready='1']")
    main.wait_for(timeout=120_000)
    ut.locator(".clrp-thumbnails .clrp-thumbs[data-count='12']").wait_for(timeout=60_000)
    bars = ut.locator(".clrp-neuron-bars rect.bar")
    bars.first.wait_for(timeout=30_000)
    start = kernel_state(log, lambda s: s["map_version"] >= 1)
    assert _data(main, "map-version") == start["map_version"]
    assert _data(main, "target") == start["target"]
    assert main.get_attribute("data-layer") == start["layer"]

    # 1. a neuron bar: its conditional map appears, in the DOM and in the kernel
    groups = ut.locator(".clrp-neuron-bars .bargroup")
    groups.nth(2).locator("rect.bar").first.dispatch_event("click")
    # the view may say "single" while its map is still computing; wait for the panel itself
    single = ut.locator(".clrp-neuron-view .clrp-heatmap[data-view='single'][data-panels='1']")
    single.wait_for(timeout=30_000)
    first = _data(single, "channels")
    state = kernel_state(log, lambda s: len(s["channels"]) == 1)
    assert state["channels"] == first and _data(neurons, "panels") == 1

    # 2. a second bar: A vs B side by side with their difference
    groups.nth(5).locator("rect.bar").first.dispatch_event("click")
    pair = ut.locator(".clrp-neuron-view .clrp-heatmap[data-view='compare'][data-panels='3']")
    pair.wait_for(timeout=30_000)
    state = kernel_state(log, lambda s: len(s["channels"]) == 2)
    assert state["channels"] == _data(pair, "channels") and state["channels"][0] == first[0]
    _assert_shown_is_computed(lab_server.root, state)
    assert "correlation" in ut.locator(".clrp-neuron-view .clrp-caption").inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ut.screenshot(path=str(ARTIFACTS / "explorer_compare.png"))  # the README's picture

    # 2b. rapid clicks on four bars: only the last two are shown, never a stale map
    page.evaluate(RAPID_CLICKS)
    want = start["bars"][9:11]
    compact = json.dumps(want, separators=(",", ":"))  # as JSON.stringify writes it
    settled = ut.locator(f".clrp-neuron-view .clrp-heatmap[data-channels='{compact}']")
    settled.wait_for(timeout=30_000)
    # the last view wins on both sides: the kernel's newest map is the one the DOM shows
    state = kernel_state(
        log, lambda s: s["channels"] == want and s["map_version"] == _data(settled, "map-version")
    )
    assert _data(settled, "channels") == state["channels"] == want

    # 3. a heatmap pixel (one under strong neuron relevance): the neuron list fills
    wrap = ut.locator(".clrp-main-map .clrp-canvas-wrap").first
    box = wrap.bounding_box()
    (py, px), (h, w) = start["peak"], start["size"]
    wrap.click(position={"x": box["width"] * (px + 0.5) / w, "y": box["height"] * (py + 0.5) / h})
    listed = ut.locator(".clrp-main-map .clrp-heatmap:not([data-pixel-neurons='0'])")
    listed.wait_for(timeout=30_000)
    ut.locator(".clrp-main-map .clrp-neuron").first.wait_for(timeout=10_000)
    pixel = _data(ut.locator(".clrp-main-map .clrp-heatmap"), "pixel")
    assert pixel == start["peak"] and kernel_state(log, lambda s: s["pixel"] == pixel)

    # 4. CLRP2: the map changes
    before = main.locator("canvas").first.evaluate("c => c.toDataURL()")
    picker = ut.locator("select", has=page.locator("option", has_text="CLRP2"))
    picker.select_option(label="CLRP2 (rather than not the class)")
    ut.locator(".clrp-main-map .clrp-heatmap[data-contrast='clrp2']").wait_for(timeout=30_000)
    after = main.locator("canvas").first.evaluate("c => c.toDataURL()")
    assert after != before
    state = kernel_state(log, lambda s: s["contrast"] == "clrp2")
    assert state["map_version"] > start["map_version"]
    # the header's map arrives before the finished view's state: wait for the DOM to follow
    version = state["map_version"]
    ut.locator(f".clrp-main-map .clrp-heatmap[data-map-version='{version}']").wait_for(
        timeout=30_000
    )
    assert _data(main, "map-version") == version
    _assert_shown_is_computed(lab_server.root, state)

    # the thumbnails follow the main map; then no progress bar is left behind
    ut.locator(".clrp-main-map .clrp-heatmap[data-ready='1'][data-busy='0']").wait_for(
        timeout=60_000
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ut.screenshot(path=str(ARTIFACTS / "explorer_lab.png"))
    page.screenshot(path=str(ARTIFACTS / "explorer_lab_page.png"), full_page=True)

    # 5. a hostile class name renders as text, never as HTML
    hostile = page.locator(".hostile")
    # Lab renders only cells near the viewport (windowed notebook): bring the last cell on screen
    page.evaluate(
        """async () => {
          const nb = window.jupyterapp.shell.currentWidget.content;
          nb.activeCellIndex = nb.widgets.length - 1;
          await nb.scrollToItem(nb.activeCellIndex);
        }"""
    )
    hostile.locator(".clrp-main-map .clrp-heatmap[data-ready='1']").wait_for(timeout=60_000)
    assert EVIL in hostile.locator(".clrp-main-map figcaption").first.inner_text()
    assert EVIL in hostile.locator(".clrp-top5").inner_text()
    assert page.locator("img[src='x']").count() == 0 and dialogs == []
    hostile.screenshot(path=str(ARTIFACTS / "explorer_lab_hostile.png"))
    assert errors == []
