"""Coverage matrix of issue 9: the torchvision zoo with random weights, paper rules, float64.

Each model is built once (``zoo_models.build``: zero biases and shifts, activations of order 1)
and explained once (``zoo_models.measure``); the tests below read that one report. With zero
biases the paper's rules are exactly conservative, so every model must give back its logit at
the input to 1e-6, in LRP and in CLRP1's dual, without a ConservationWarning (z+'s stabiliser
aside: :data:`STABILISER_TOL`). A model that loses relevance fails here; that the engine then
warns, naming the layer, is tested in test_op_errors.py and the timm matrix.
"""

from __future__ import annotations

import pytest
import torch
from zoo_models import ZOO, ZooReport, build, measure

TOL = 1e-6
#: CLRP2's dual is the virtual logit row -W_j; these models' logits come after ReLU and average
#: pooling of the last conv, not from a Linear layer, so CLRP2 is refused (clearly).
CLRP2_REFUSED = {"squeezenet1_1"}
#: Exact up to z+'s stabiliser (eps=1e-9) on outputs whose positive contributions are tiny but
#: non-zero: below the guard's threshold, so no warning. efficientnet_b0: 1.2e-6 (7e-9 with
#: eps=1e-15), README "Supported models" lists it as approximate by that figure.
STABILISER_TOL = {"efficientnet_b0": 1e-5}
#: Models whose conditional layer (``zoo_models.measure``: the middle conv) is a squeeze-excitation
#: gate branch: the Gate rule gives it no relevance by design, so its maps are 0 and sum to 0.
GATE_BRANCH_CONDITIONAL = {"efficientnet_v2_s"}  # features.5.7.block.2.fc2


@pytest.fixture(scope="module", params=list(ZOO))
def report(request: pytest.FixtureRequest) -> ZooReport:
    return measure(build(request.param))


def test_input_relevance_sums_to_the_logit(report: ZooReport) -> None:
    tol = STABILISER_TOL.get(report.name, TOL)
    assert report.lrp_sum == pytest.approx(report.logit, rel=tol), "LRP (target kind)"
    assert report.dual_sum == pytest.approx(report.logit, rel=tol), "CLRP1 dual"


def test_no_conservation_warning(report: ZooReport) -> None:
    assert report.warnings == []


@pytest.mark.parametrize("variant", ["clrp1", "clrp2"])
def test_clrp_maps_are_finite_and_not_zero(report: ZooReport, variant: str) -> None:
    if variant == "clrp2" and report.name in CLRP2_REFUSED:
        assert report.clrp2 is None and "clrp1" in report.clrp2_refusal
        return
    heat = getattr(report, variant)
    assert heat is not None, report.clrp2_refusal
    assert torch.isfinite(heat).all()
    assert heat.max() > 0
    # a map of order 1: the relevance of a logit of order 1, not 1000x (a leak) or 1e-12
    assert heat.sum() <= 100 * abs(report.logit)


def test_conditional_maps_sum_to_the_channels_relevance(report: ZooReport) -> None:
    if report.name not in GATE_BRANCH_CONDITIONAL:
        assert any(abs(r) > 1e-3 * abs(report.logit) for r in report.channel_relevance)
    assert report.conditional_sums == pytest.approx(
        report.channel_relevance, abs=TOL * abs(report.logit)
    ), report.conditional_layer
