"""The Explorer's front end in real JupyterLab + chromium, as a user meets it: readable in the
light and dark themes (WCAG contrast >= 4.5:1), laid out without horizontal scrolling at 900 and
1920 px, keyboard-driven (pixels, thumbnails), colour bars and a shared scale, and downloads
that arrive in the browser (nothing written on the server).

One JupyterLab page per module; screenshots land in ``build/test-artifacts/ux_*.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from conftest import ARTIFACTS, kernel_state

pytestmark = pytest.mark.browser

CELLS = [
    "import json, pathlib\n"
    "import clrp_widgets as cw\n"
    "bundle = cw.load_model('shapes')\n"
    "images = cw.scenes(1, seed=3, min_objects=2, max_objects=2).tensor()\n"
    "explorer = cw.Explorer(bundle, images[0])\n"
    "explorer.add_class('under-test')\n"
    "_log = pathlib.Path('ux_state.jsonl')\n"
    "def _record(change=None):\n"
    "    state = {k: getattr(explorer, k) for k in ('pixel', 'channels', 'map_version')}\n"
    "    _log.open('a').write(json.dumps(state) + '\\n')\n"
    "explorer.observe(_record, names=['map_version', 'pixel', 'channels'])\n"
    "_record()\n"
    "explorer",
]
# WCAG 2 contrast of each visible text element against the background it is drawn on
# (translucent backgrounds and text colours composited, as the eye sees them).
CONTRASTS = """(selector) => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let out = [255, 255, 255];
    for (const c of layers.reverse()) out = out.map((v, i) => c[i] * c[3] + v * (1 - c[3]));
    return out;
  };
  const lum = (rgb) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(rgb[0]) + 0.7152 * f(rgb[1]) + 0.0722 * f(rgb[2]);
  };
  return [...document.querySelectorAll(selector)]
    .filter((e) => e.getClientRects().length && e.textContent.trim())
    .map((e) => {
      const fg = parse(getComputedStyle(e).color);
      const bg = background(e);
      const seen = bg.map((v, i) => fg[i] * fg[3] + v * (1 - fg[3]));
      const [a, b] = [lum(seen), lum(bg)];
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      return { text: e.textContent.trim().slice(0, 50), cls: e.className, ratio };
    });
}"""
TEXT = {
    "map titles": ".under-test .clrp-heatmap .clrp-title, .under-test .clrp-panel figcaption",
    "toolbar labels": ".under-test .clrp-toolbar label, .under-test .clrp-toolbar button",
    "captions": ".under-test .clrp-caption, .under-test .clrp-legend, "
    ".under-test .clrp-colorbar-ticks span, .under-test .clrp-thumbs .clrp-title",
    "readouts": ".under-test .clrp-readout",
    "neuron list": ".under-test .clrp-neurons-title, .under-test .clrp-neuron",
}
OVERFLOW = """() => {
  const ex = document.querySelector(".under-test");
  const scroller = ex.closest(".jp-WindowedPanel-outer, .jp-Notebook");
  const cut = [...ex.querySelectorAll("button, .clrp-toolbar label")]
    .filter((b) => b.getClientRects().length && b.scrollWidth > b.clientWidth + 1)
    .map((b) => b.textContent.trim());
  const exRect = ex.getBoundingClientRect();
  const parts = ".clrp-heatmap, .clrp-thumbs, .bqplot, .widget-dropdown, button";
  const outside = [...ex.querySelectorAll(parts)]
    .filter((e) => e.getClientRects().length)
    .filter((e) => e.getBoundingClientRect().right > exRect.right + 1)
    .map((e) => e.className.toString().slice(0, 60));
  return {
    page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    notebook: scroller ? scroller.scrollWidth - scroller.clientWidth : 0,
    explorer: ex.scrollWidth - ex.clientWidth,
    cut, outside,
  };
}"""


def _set_theme(page, name: str) -> None:
    page.evaluate(
        f"() => window.jupyterapp.commands.execute('apputils:change-theme', {{theme: '{name}'}})"
    )
    light = "true" if "Light" in name else "false"
    page.wait_for_function(
        f"() => document.body.dataset.jpThemeLight === '{light}'", timeout=30_000
    )
    page.wait_for_timeout(600)  # theme CSS applied, bqplot redrawn


@pytest.fixture(scope="module")
def lab(lab_server, browser):
    """JupyterLab running the Explorer notebook (left area closed: the notebook gets the width)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, lab_server.root / "ux.ipynb")
    context = browser.new_context(viewport={"width": 1400, "height": 1600}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"{e}\n{e.stack}"[:600]))
    lab_server.run_all(page, "ux.ipynb")
    page.locator(".under-test .clrp-main-map .clrp-heatmap[data-ready='1']").wait_for(
        timeout=120_000
    )
    page.locator(".under-test .clrp-thumbnails .clrp-thumbs[data-count='12']").wait_for(
        timeout=60_000
    )
    page.evaluate(
        "() => { const s = window.jupyterapp.shell; if (!s.leftCollapsed) s.collapseLeft(); }"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield page, lab_server.root / "ux_state.jsonl", errors
    context.close()


def _shot(page, name: str) -> None:
    page.locator(".under-test").screenshot(path=str(ARTIFACTS / f"ux_{name}.png"))


def _select_pixel_with_keys(page, log: Path) -> list[int]:
    """Focus the main map, move the cursor with the arrow keys and press Enter."""
    wrap = page.locator(".under-test .clrp-main-map .clrp-canvas-wrap").first
    wrap.focus()
    for key in ["ArrowRight", "ArrowRight", "ArrowDown", "Shift+ArrowDown", "ArrowLeft"]:
        page.keyboard.press(key)
    cursor = json.loads(
        page.locator(".under-test .clrp-main-map .clrp-heatmap").get_attribute("data-cursor")
    )
    page.keyboard.press("Enter")
    state = kernel_state(log, lambda s: s["pixel"] == cursor)
    return state["pixel"]


def test_keyboard_moves_and_selects_the_pixel(lab):
    page, log, errors = lab
    main = page.locator(".under-test .clrp-main-map .clrp-heatmap")
    pixel = _select_pixel_with_keys(page, log)
    # from the centre: two right and one left, one down and eight down
    wrap = page.locator(".under-test .clrp-main-map .clrp-canvas-wrap").first
    size = wrap.evaluate("w => [w.querySelector('canvas').height, w.querySelector('canvas').width]")
    assert pixel == [size[0] // 2 + 9, size[1] // 2 + 1]
    marked = json.dumps(pixel, separators=(",", ":"))
    main.locator(f".clrp-canvas-wrap[data-selected-pixel='{marked}']").first.wait_for(
        timeout=30_000
    )
    ring = page.locator(".under-test .clrp-main-map .clrp-marker").first.bounding_box()
    assert ring["width"] >= 18 and ring["height"] >= 18, (
        "the selected-pixel marker is too small to see"
    )
    assert wrap.get_attribute("aria-label") and "Enter" in wrap.get_attribute("aria-label")
    page.locator(".under-test .clrp-main-map .clrp-neuron").first.wait_for(timeout=30_000)
    _shot(page, "keyboard_pixel")
    assert errors == []


def test_keyboard_walks_the_thumbnails_and_enter_selects(lab):
    page, log, errors = lab
    thumbs = page.locator(".under-test .clrp-thumbnails .clrp-thumb")
    thumbs.first.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    focused = page.evaluate("() => document.activeElement.dataset.channel")
    assert focused == thumbs.nth(2).get_attribute("data-channel")
    assert thumbs.nth(2).get_attribute("aria-label")
    page.keyboard.press("Enter")
    channel = int(focused)
    kernel_state(log, lambda s: channel in s["channels"])
    page.locator(f".under-test .clrp-thumb.clrp-selected[data-channel='{channel}']").wait_for(
        timeout=30_000
    )
    assert errors == []


def test_the_pixel_list_does_not_push_content_down(lab):
    page, log, errors = lab
    below = page.locator(".under-test .clrp-neuron-bars").first
    main = page.locator(".under-test .clrp-main-map .clrp-heatmap")
    page.locator(".under-test .clrp-main-map .clrp-canvas-wrap").first.focus()
    page.keyboard.press("Escape")
    # no pixel -> a pixel -> another pixel: the part below never moves
    tops = [below.bounding_box()["y"]]
    for key in ["ArrowUp", "ArrowLeft"]:
        page.keyboard.press(key)
        page.keyboard.press("Enter")
        cursor = json.loads(main.get_attribute("data-cursor"))
        kernel_state(log, lambda s, c=cursor: s["pixel"] == c)
        page.wait_for_timeout(300)
        tops.append(below.bounding_box()["y"])
    assert max(tops) - min(tops) <= 1, f"the neuron bars moved: {tops}"
    assert errors == []


@pytest.mark.parametrize("theme", ["JupyterLab Light", "JupyterLab Dark"])
def test_text_is_readable_in_light_and_dark_themes(lab, theme):
    page, log, errors = lab
    _set_theme(page, theme)
    if page.locator(".under-test .clrp-main-map .clrp-neuron").count() == 0:
        _select_pixel_with_keys(page, log)
        page.locator(".under-test .clrp-main-map .clrp-neuron").first.wait_for(timeout=30_000)
    page.locator(".under-test .clrp-main-map .clrp-canvas-wrap").first.hover()
    low = {}
    for part, selector in TEXT.items():
        found = page.evaluate(CONTRASTS, selector)
        assert found, f"no {part} on the page"
        low.update(
            {f"{part}: {f['text']}": round(f["ratio"], 2) for f in found if f["ratio"] < 4.5}
        )
    _shot(page, "dark" if "Dark" in theme else "light")
    _set_theme(page, "JupyterLab Light")
    assert low == {}, f"text below 4.5:1 in {theme}: {low}"
    assert errors == []


@pytest.mark.parametrize("width", [900, 1920])
def test_layout_fits_900_and_1920_px(lab, width):
    page, _log, errors = lab
    page.set_viewport_size({"width": width, "height": 1600})
    page.wait_for_timeout(800)  # Lab relayout
    # bqplot redraws a resized figure only once it is on screen: show each, as a user scrolls
    figures = page.locator(".under-test .bqplot.figure")
    for i in range(figures.count()):
        figures.nth(i).scroll_into_view_if_needed()
        page.wait_for_timeout(700)
    page.locator(".under-test").scroll_into_view_if_needed()
    fit = page.evaluate(OVERFLOW)
    _shot(page, f"{width}px")
    page.screenshot(path=str(ARTIFACTS / f"ux_{width}px_page.png"))
    page.set_viewport_size({"width": 1400, "height": 1600})
    assert fit["page"] <= 0 and fit["notebook"] <= 0 and fit["explorer"] <= 0, fit
    assert fit["cut"] == [], f"buttons cut short: {fit['cut']}"
    assert fit["outside"] == [], f"parts stick out of the Explorer: {fit['outside']}"
    assert errors == []


def test_compare_view_has_colour_bars_and_a_shared_scale(lab):
    page, _log, errors = lab
    view = page.locator(".under-test .clrp-neuron-view .clrp-heatmap")
    thumbs = page.locator(".under-test .clrp-thumbnails .clrp-thumb")
    for i in (0, 1, 3):  # the last two clicked are kept
        if len(json.loads(view.get_attribute("data-channels") or "[]")) == 2:
            break
        thumbs.nth(i).click()
        page.wait_for_timeout(400)
    page.locator(
        ".under-test .clrp-neuron-view .clrp-heatmap[data-view='compare'][data-panels='3']"
    ).wait_for(timeout=30_000)
    bars = view.locator(".clrp-colorbar")
    assert bars.count() == 3
    scales = [
        float(s)
        for s in view.locator(".clrp-panel").evaluate_all("fs => fs.map(f => f.dataset.scale)")
    ]
    box = view.locator(".clrp-shared-scale")
    assert box.is_visible() and not box.is_checked()
    box.check()
    view.locator(".clrp-panel").first.wait_for()
    page.locator(".under-test .clrp-neuron-view .clrp-heatmap[data-shared-scale='1']").wait_for(
        timeout=10_000
    )
    shared = [
        float(s)
        for s in view.locator(".clrp-panel").evaluate_all("fs => fs.map(f => f.dataset.scale)")
    ]
    assert shared == [max(scales)] * 3
    assert "relevance" in view.locator(".clrp-legend").first.inner_text()  # the units
    assert "red" in view.locator(".clrp-legend").nth(2).inner_text()  # A − B is signed
    _shot(page, "compare_shared_scale")
    box.uncheck()
    assert errors == []


def test_png_download_is_titled_named_and_at_twice_display_size(lab):
    page, log, errors = lab
    main = page.locator(".under-test .clrp-main-map .clrp-heatmap")
    before = set(p.name for p in Path(log.parent).iterdir())
    with page.expect_download() as info:
        main.locator(".clrp-toolbar button.clrp-png").click()
    download = info.value
    state = json.loads(main.get_attribute("data-target") or "null")
    name = download.suggested_filename
    assert name.startswith("clrp_") and name.endswith(".png") and name != "clrp-map.png"
    assert main.get_attribute("data-contrast") in name
    path = ARTIFACTS / f"ux_download_{name}"
    download.save_as(path)
    from PIL import Image

    with Image.open(path) as im:
        width, height = im.size
    display = main.locator("canvas").first.bounding_box()
    assert width >= 2 * display["width"] and height >= 2 * display["height"]
    assert set(p.name for p in Path(log.parent).iterdir()) == before, (
        "a file appeared on the server"
    )
    del state
    assert errors == []


def test_colour_underlay_on_demand(lab):
    page, _log, errors = lab
    main = page.locator(".under-test .clrp-main-map .clrp-heatmap")
    canvas = main.locator(".clrp-panel canvas").first
    grey = canvas.evaluate("c => c.toDataURL()")
    main.locator("input.clrp-image-colour").check()
    page.wait_for_function(
        "(g) => document.querySelector('.under-test .clrp-main-map .clrp-panel canvas')"
        ".toDataURL() !== g",
        arg=grey,
        timeout=10_000,
    )
    saturated = canvas.evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let n = 0; for (let i = 0; i < d.length; i += 4)
                    if (Math.max(d[i], d[i+1], d[i+2]) - Math.min(d[i], d[i+1], d[i+2]) > 60) n++;
                  return n; }"""
    )
    assert saturated > 0
    _shot(page, "colour_image")
    main.locator("input.clrp-image-colour").uncheck()
    assert errors == []


def test_netcdf_download_arrives_in_the_browser(lab):
    page, log, errors = lab
    main = page.locator(".under-test .clrp-main-map .clrp-heatmap")
    before = {p.name for p in log.parent.iterdir()}
    button = main.locator("button.clrp-netcdf")
    assert button.is_visible(), "the Explorer offers no netCDF download"
    with page.expect_download(timeout=60_000) as info:
        button.click()
    download = info.value
    assert download.suggested_filename.startswith("clrp_")
    assert download.suggested_filename.endswith(".nc")
    path = ARTIFACTS / f"ux_download_{download.suggested_filename}"
    download.save_as(path)
    head = path.read_bytes()[:4]
    assert head in (b"\x89HDF", b"CDF\x01", b"CDF\x02"), head
    assert {p.name for p in log.parent.iterdir()} == before, "a file appeared on the server"
    assert errors == []
