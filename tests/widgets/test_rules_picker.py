"""The rules picker keeps every setting of the user's Explainer (issue 21): a model that needs
``overrides`` (an op without a rule) and a chosen ``canonizers`` setting still explains after a
switch of preset, and the map shown is the one the Explainer with that preset computes."""

from __future__ import annotations

import numpy as np
import torch
from test_explorer import NAMES, TinyNet, shown
from torch import nn
from widget_messages import update

import clrp_widgets as cw
from clrp_widgets.engine import Pass
from clrp_widgets.widgets.explorer import RULES, Explorer


class ErfNet(nn.Module):
    """TinyNet with an erf after its first block: refused without an override."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = TinyNet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.erf(self.net.features[:3](x))
        return self.net.classifier(self.net.features[3:](h))


def test_switching_rules_keeps_overrides_and_canonizers():
    model = ErfNet().eval()
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    settings = {"overrides": {torch.erf: Pass()}, "canonizers": None, "class_names": NAMES}
    own = cw.Explainer(model, input_bounds=(0.0, 1.0), **settings)
    ex = Explorer(own, image).wait()
    assert ex.error == ""
    update(ex.controls.rules_picker, index=RULES.index("epsilon"))
    ex.wait()
    assert ex.error == "" and ex.rules == "epsilon"
    other = ex.session.explainer("epsilon")
    assert other.overrides == own.overrides and other.canonizers == own.canonizers
    want = cw.Explainer(model, rules="epsilon", input_bounds=(0.0, 1.0), **settings).explain(
        image[None], ex.target, contrast=ex.contrast
    )
    heat = want["input"]["heatmap"].sel(kind="contrast").values[0]
    np.testing.assert_allclose(shown(ex.heatmap)[0], heat, rtol=1e-5, atol=1e-6 * abs(heat).max())


def test_the_picker_offers_explanation_presets_only():
    assert "lrp0" not in RULES  # the autograd oracle: noisy maps, not an explanation preset
    assert {"paper", "attnlrp", "cp_lrp", "epsilon_plus"} <= set(RULES)
