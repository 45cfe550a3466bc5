"""An image set in the Explorer in real JupyterLab + chromium: the gallery strip pages by click
and by the ← → keys, an uploaded image is explained, and class B can never equal the target.

Every step is checked in the DOM and in the kernel (state lines the notebook appends to a file).
Screenshots land in ``build/test-artifacts/sets_*.png``.
"""

from __future__ import annotations

import functools
import json

import nbformat
import numpy as np
import pytest
from conftest import ARTIFACTS, kernel_state
from PIL import Image

pytestmark = pytest.mark.browser
_kernel_state = functools.partial(kernel_state, timeout=60.0)

CELLS = [
    "import json, pathlib\n"
    "import clrp_widgets as cw\n"
    "bundle = cw.load_model('shapes')\n"
    "explorer = cw.Explorer(bundle, cw.scenes(10, seed=5))\n"
    "explorer.add_class('under-test')\n"
    "explorer.wait()\n"
    "_log = pathlib.Path('sets_state.jsonl')\n"
    "def _record(change=None):\n"
    "    keys = ('image', 'target', 'contrast', 'class_b', 'map_version')\n"
    "    state = {k: getattr(explorer, k) for k in keys}\n"
    "    state['labels'] = explorer.gallery.labels\n"
    "    state['note'] = explorer.controls.note.value\n"
    "    _log.open('a').write(json.dumps(state) + '\\n')\n"
    "explorer.observe(_record, names=['map_version', 'image', 'class_b'])\n"
    "_record()\n"
    "explorer",
]


@pytest.fixture(scope="module")
def lab(lab_server, browser):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, lab_server.root / "sets.ipynb")
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"{e}\n{e.stack}"[:600]))
    lab_server.run_all(page, "sets.ipynb")
    page.locator(".under-test .clrp-main-map .clrp-heatmap[data-ready='1']").wait_for(
        timeout=120_000
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield page, lab_server.root / "sets_state.jsonl", errors
    context.close()


def _shown_image(page, index: int) -> None:
    """Wait until the main map and the strip both show image ``index``."""
    ut = page.locator(".under-test")
    ut.locator(f".clrp-main-map .clrp-heatmap[data-image='{index}'][data-busy='0']").wait_for(
        timeout=60_000
    )
    ut.locator(f".clrp-gallery-strip[data-selected='{index}']").wait_for(timeout=30_000)


def test_the_strip_pages_by_click_and_arrow_keys(lab):
    page, log, errors = lab
    strip = page.locator(".under-test .clrp-gallery-strip")
    assert strip.get_attribute("data-total") == "10"
    assert json.loads(strip.get_attribute("data-page")) == list(range(8))
    assert strip.locator(".clrp-gallery-item").count() == 8
    canvas = page.locator(".under-test .clrp-main-map canvas").first
    before = canvas.evaluate("c => c.toDataURL()")

    strip.get_by_role("button", name="next image").click()
    _shown_image(page, 1)
    assert _kernel_state(log, lambda s: s["image"] == 1)["map_version"] > 0
    assert canvas.evaluate("c => c.toDataURL()") != before  # another image, another map

    strip.focus()
    page.keyboard.press("ArrowLeft")
    _shown_image(page, 0)
    page.keyboard.press("ArrowLeft")  # wraps to the last image, on the second page
    _shown_image(page, 9)
    assert json.loads(strip.get_attribute("data-page")) == [8, 9]
    assert _kernel_state(log, lambda s: s["image"] == 9)["image"] == 9
    page.keyboard.press("ArrowRight")  # and back to the first page
    _shown_image(page, 0)

    strip.locator(".clrp-gallery-item[data-index='3']").click()
    _shown_image(page, 3)
    item = strip.locator(".clrp-gallery-item[data-index='3']")
    assert item.get_attribute("aria-pressed") == "true" and "→" in item.inner_text()
    strip.screenshot(path=str(ARTIFACTS / "sets_gallery.png"))
    assert errors == []


def test_an_uploaded_image_is_explained(lab, tmp_path):
    page, log, errors = lab
    rgb = np.zeros((96, 120, 3), np.uint8)
    rgb[20:70, 30:90] = (220, 40, 40)  # one big filled rectangle
    path = tmp_path / "mine.png"
    Image.fromarray(rgb).save(path)
    with page.expect_file_chooser() as chooser:  # the user clicks the button and picks a file
        page.locator(".under-test .clrp-upload").click()
    chooser.value.set_files(str(path))
    _shown_image(page, 10)
    state = _kernel_state(log, lambda s: s["image"] == 10)
    assert state["labels"][10] == "upload: mine" and len(state["labels"]) == 11
    strip = page.locator(".under-test .clrp-gallery-strip")
    assert strip.get_attribute("data-total") == "11"
    assert "upload: mine" in strip.locator(".clrp-gallery-item[data-index='10']").inner_text()
    page.locator(".under-test").screenshot(path=str(ARTIFACTS / "sets_upload.png"))
    assert errors == []


def test_class_b_equal_to_the_target_is_refused_in_place(lab):
    page, log, errors = lab
    ut = page.locator(".under-test")
    contrast = ut.get_by_label("contrast", exact=True)
    contrast.select_option(label="rather than class B")
    main = ut.locator(".clrp-main-map .clrp-heatmap[data-contrast='pairwise'][data-busy='0']")
    main.wait_for(timeout=60_000)
    state = _kernel_state(log, lambda s: s["contrast"] == "pairwise" and s["class_b"] >= 0)
    title = main.locator("figcaption").first.inner_text()
    target, class_b = state["target"], state["class_b"]
    picker = ut.get_by_label("class B", exact=True)
    assert picker.evaluate("s => s.selectedIndex") == class_b
    picker.select_option(index=target)  # B = the target
    note = ut.locator(".clrp-note")
    page.wait_for_function(
        "() => document.querySelector('.under-test .clrp-note').textContent.includes('differ')",
        timeout=30_000,
    )
    assert "must differ from the target" in note.inner_text()
    # the picker goes back to B, and the map keeps its (still true) title and state
    page.wait_for_function(f"s => s.selectedIndex === {class_b}", arg=picker.element_handle())
    assert _kernel_state(log, lambda s: True)["class_b"] == class_b
    assert main.locator("figcaption").first.inner_text() == title
    assert main.get_attribute("data-class-b") == str(class_b)
    assert main.get_attribute("data-target") == str(target)
    ut.screenshot(path=str(ARTIFACTS / "sets_class_b.png"))
    assert errors == []
