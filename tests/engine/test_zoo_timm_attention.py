"""timm models with attention in the coverage matrix (issue 20): CNNs with attention blocks,
vision transformers and MLP mixers.

Under the paper preset (attention products under CP-LRP's rule: the attention weights held
constant, products split uniformly; DESIGN.md) the input relevance sums to the logit less what
constant tokens (class, distillation, register tokens) keep, within 1e-6, with no warning.
Under ``rules="attnlrp"`` (not conservative) the maps are finite, not zero and class-specific.

``make test`` runs the models of ``zoo_external.TIMM_CI``; ``CLRP_ZOO=full`` runs all.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from zoo_external import TIMM_ATTENTION, Report, build_timm, measure, timm_matrix
from zoo_matrix import check_attnlrp, check_conservative, check_refusals

import clrp_widgets as cw
from clrp_widgets.engine.errors import ConservationWarning

pytest.importorskip("timm")

#: z+'s stabiliser (measured; every one below 1e-11 with stabilisers at 1e-15)
APPROXIMATE = {
    "tiny_vit_5m_224": 1e-5,  # 1.2e-6
    "xcit_nano_12_p16_224": 1e-5,  # 1.0e-6
    "mixer_s16_224": 1e-5,  # 3.2e-6
}
REFUSED: dict[str, str] = {}


@pytest.fixture(scope="module", params=timm_matrix(TIMM_ATTENTION))
def case(request: pytest.FixtureRequest):
    return build_timm(request.param)


@pytest.fixture(scope="module")
def paper(case) -> Report:
    return measure(case, "paper")


def test_paper_preset_is_exact_up_to_constant_tokens(paper: Report) -> None:
    check_conservative(paper, APPROXIMATE)


def test_attnlrp_is_explained(case) -> None:
    check_attnlrp(measure(case, "attnlrp"))


def test_refusals_stay_under_five_percent() -> None:
    check_refusals(REFUSED, len(TIMM_ATTENTION))


def test_class_tokens_keep_a_documented_share(paper: Report) -> None:
    """ViTs with a class token: the token keeps part of the logit; models without keep none."""
    with_tokens = ("vit_tiny", "deit", "vit_small_patch14_dinov2", "beit", "eva02", "cait", "pit")
    if paper.name.startswith(with_tokens):
        assert 0 < abs(paper.constant_tokens) < 1, paper.constant_tokens
    elif paper.name.startswith(("swin", "mobilevit", "levit", "botnet", "lambda", "mixer")):
        assert paper.constant_tokens == 0


def test_swin_at_an_odd_stage_size_warns_about_its_padding() -> None:
    """Swin's patch merging pads a 7x7 map to 8x8 with zeros; LayerNorm's identity rule hands
    relevance to those zeros, which the padding drops (2.8e-2 of the logit at 56 px): the
    engine must say so, never silently."""
    case = build_timm("swin_tiny_patch4_window7_224", 56)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tree = cw.Explainer(case.model, input_bounds=(-1.0, 1.0)).explain(case.x, case.target)
    lost = [w for w in caught if issubclass(w.category, ConservationWarning)]
    assert lost, "relevance lost to padding without a ConservationWarning"
    logit = float(tree["logits"].values[0, case.target])
    got = float(torch.as_tensor(tree["input"]["relevance"].sel(kind="target").values).sum())
    assert abs(got - logit) > 1e-3 * abs(logit)
