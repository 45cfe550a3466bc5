"""The Explorer on a (tiny, random) ViT in real JupyterLab + chromium: an attention layer's
heads as neurons, one head's map with its patch-grid panel, then two heads compared.

Screenshots go to ``build/test-artifacts/``: ``vit_head_patch_grid.png``,
``vit_heads_compare.png``.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from conftest import ARTIFACTS, kernel_state

pytestmark = pytest.mark.browser

ATTENTION = "encoder.layers.encoder_layer_1.self_attention:softmax"
NOTEBOOK = """
import json, pathlib
import torch, torchvision
import clrp_widgets as cw
from clrp_widgets.models.bundle import ModelBundle

torch.manual_seed(0)
vit = torchvision.models.VisionTransformer(
    image_size=64, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64,
    num_classes=5,
)
torch.nn.init.normal_(vit.heads.head.weight, std=0.3)
bundle = ModelBundle(vit, ["disk", "square", "ring", "bar", "cross"], (0.0, 1.0), name="tiny-vit")
image = cw.scenes(1, seed=0).tensor()[0]
explorer = cw.Explorer(bundle, image, rules="attnlrp")  # opens on the last attention map
explorer.add_class("under-test")
_log = pathlib.Path("vit_state.jsonl")

def _record(change=None):
    state = {k: getattr(explorer, k) for k in ("layer", "channels", "map_version")}
    state["titles"] = list(explorer.neuron_view.panel_titles)
    state["bars"] = list(explorer.bars.bars.x)
    with _log.open("a") as f:
        f.write(json.dumps(state) + "\\n")

explorer.observe(_record, names=["map_version"])
explorer
"""


def _data(locator, key: str):
    return json.loads(locator.get_attribute(f"data-{key}"))


def test_vit_heads_in_jupyterlab(lab_server, page):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK)]
    nbformat.write(nb, lab_server.root / "vit.ipynb")
    log = lab_server.root / "vit_state.jsonl"
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_viewport_size({"width": 1400, "height": 2000})
    lab_server.run_all(page, "vit.ipynb")

    ut = page.locator(".under-test")
    ut.locator(".clrp-main-map .clrp-heatmap[data-ready='1']").wait_for(timeout=120_000)
    groups = ut.locator(".clrp-neuron-bars .bargroup")
    groups.first.locator("rect.bar").first.wait_for(timeout=30_000)
    start = kernel_state(log, lambda s: s["map_version"] >= 1 and s["layer"] == ATTENTION)
    assert start["bars"] and all(label.startswith("head ") for label in start["bars"])

    # one head: its conditional map and its relevance on the 8 x 8 patch grid
    groups.nth(0).locator("rect.bar").first.dispatch_event("click")
    single = ut.locator(".clrp-neuron-view .clrp-heatmap[data-view='single'][data-panels='2']")
    single.wait_for(timeout=30_000)
    state = kernel_state(log, lambda s: len(s["channels"]) == 1)
    assert "8×8 patch grid" in state["titles"][1] and "class token" in state["titles"][1]
    assert "8×8 patch grid" in ut.locator(".clrp-neuron-view").inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ut.screenshot(path=str(ARTIFACTS / "vit_head_patch_grid.png"))

    # a second head: the two compared side by side with their difference
    groups.nth(1).locator("rect.bar").first.dispatch_event("click")
    pair = ut.locator(".clrp-neuron-view .clrp-heatmap[data-view='compare'][data-panels='3']")
    pair.wait_for(timeout=30_000)
    state = kernel_state(log, lambda s: len(s["channels"]) == 2)
    a, b = state["channels"]
    assert state["titles"][:2] == [f"A: head {a}", f"B: head {b}"]
    caption = ut.locator(".clrp-neuron-view .clrp-caption").inner_text()
    assert caption.startswith(f"head {a} vs head {b}") and "correlation" in caption
    ut.screenshot(path=str(ARTIFACTS / "vit_heads_compare.png"))
    assert errors == []
