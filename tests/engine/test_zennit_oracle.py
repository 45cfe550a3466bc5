"""Agreement with zennit, an independent LRP implementation (max-abs diff <= 1e-4 x max|R|)."""

from __future__ import annotations

import pytest
import torch
from engine_nets import make_cnn, make_input
from torch import nn
from zennit import composites as zc
from zennit import rules as zr
from zennit.attribution import Gradient
from zennit.types import Activation, AvgPool, Convolution
from zennit.types import Linear as ZLinear
from zoo_models import construct

import clrp_widgets as cw
from clrp_widgets.engine import RelevanceEngine

PAPER_BOUNDS = (-2.1179, 2.64)


def zennit_relevance(model, x, seeds, composite):
    """zennit's input relevance for output relevance ``seeds`` (N, C)."""
    xz = x.clone().requires_grad_(True)
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(xz, seeds)
    return relevance


def paper_composite(low, high, avg_rule):
    return zc.SpecialFirstLayerMapComposite(
        layer_map=[
            (Activation, zr.Pass()),
            (AvgPool, avg_rule),
            (ZLinear, zr.ZPlus(stabilizer=1e-9)),
        ],
        first_map=[(Convolution, zr.ZBox(low, high, stabilizer=1e-9))],
    )


def target_seeds(model, x, target):
    with torch.no_grad():
        logits = model(x)
    seeds = torch.zeros_like(logits)
    seeds[torch.arange(len(x)), target] = logits[torch.arange(len(x)), target]
    return seeds


def assert_agree(ours, theirs, tol=1e-4):
    scale = theirs.abs().max()
    assert scale > 0
    assert (ours - theirs).abs().max() <= tol * scale, float((ours - theirs).abs().max() / scale)


@pytest.mark.parametrize("size", [16, 24], ids=["avgpool_identity", "avgpool_resample"])
def test_paper_preset_matches_zennit_on_bias_free_cnn(size):
    model = make_cnn(bias=False)
    torch.manual_seed(2)
    x = torch.empty(3, 3, size, size).uniform_(*PAPER_BOUNDS)
    target = [0, 3, 5]
    ours = cw.lrp(model, x, target, input_bounds=PAPER_BOUNDS)
    avg_rule = zr.Pass() if size == 16 else zr.Norm(stabilizer=1e-9)
    theirs = zennit_relevance(
        model, x, target_seeds(model, x, target), paper_composite(*PAPER_BOUNDS, avg_rule)
    )
    assert_agree(ours, theirs)


def test_paper_preset_per_channel_bounds_match_zennit():
    model = make_cnn(bias=False)
    low = torch.tensor([-1.0, -2.0, 0.0])
    high = torch.tensor([1.0, 0.5, 3.0])
    torch.manual_seed(5)
    x = torch.rand(2, 3, 16, 16) * (high - low).reshape(1, 3, 1, 1) + low.reshape(1, 3, 1, 1)
    ours = cw.lrp(model, x, 2, input_bounds=(low, high))
    composite = paper_composite(low.reshape(1, 3, 1, 1), high.reshape(1, 3, 1, 1), zr.Pass())
    theirs = zennit_relevance(model, x, target_seeds(model, x, [2, 2]), composite)
    assert_agree(ours, theirs)


def zennit_epsilon(model, x):
    return zc.LayerMapComposite(
        layer_map=[
            *zc.layer_map_base(),
            (Convolution, zr.Epsilon(epsilon=0.25)),
            (nn.Linear, zr.Epsilon(epsilon=0.25)),
        ]
    )


ZENNIT_PRESETS = {
    "epsilon_plus": lambda: zc.EpsilonPlus(),
    "epsilon_plus_flat": lambda: zc.EpsilonPlusFlat(),
    "epsilon_gamma_box": lambda: zc.EpsilonGammaBox(low=0.0, high=1.0),
    "epsilon_alpha2_beta1": lambda: zc.EpsilonAlpha2Beta1(),
    "epsilon": lambda: zennit_epsilon(None, None),
}


@pytest.mark.parametrize("preset", sorted(ZENNIT_PRESETS))
def test_zennit_presets_match_zennit_composites_with_biases(preset):
    model = make_cnn(bias=True, seed=3)
    x = make_input(3, seed=4)
    target = [1, 4, 0]
    ours = cw.lrp(model, x, target, rules=preset, input_bounds=(0.0, 1.0))
    theirs = zennit_relevance(model, x, target_seeds(model, x, target), ZENNIT_PRESETS[preset]())
    assert_agree(ours, theirs)


def test_clrp_matches_two_pass_zennit():
    model = make_cnn(bias=False, seed=7)
    x = make_input(2, seed=8, low=-1.0, high=1.0)
    engine = RelevanceEngine(model, input_bounds=(-1.0, 1.0))
    out = engine.run(x, 2, contrast="clrp1", kinds=("target", "dual", "contrast"))
    with torch.no_grad():
        logits = model(x)
    s = logits[:, 2:3]
    seeds_t = torch.zeros_like(logits)
    seeds_t[:, 2] = s[:, 0]
    seeds_d = (s / (logits.shape[1] - 1)).expand_as(logits).clone()
    seeds_d[:, 2] = 0
    comp = paper_composite(-1.0, 1.0, zr.Pass())
    r_t = zennit_relevance(model, x, seeds_t, comp)
    r_d = zennit_relevance(model, x, seeds_d, comp)
    assert_agree(out.input[0], r_t)
    assert_agree(out.input[1], r_d)
    assert_agree(cw.clrp(model, x, 2, input_bounds=(-1.0, 1.0)), (r_t - r_d).clamp(min=0))


@pytest.mark.slow
def test_vgg16_zero_bias_matches_zennit():
    torch.manual_seed(0)
    # torchvision's VGG16, its hidden classifier layers 512 wide instead of 4096 (zoo_models):
    # the same layers, rules and names; filling 120M classifier weights took most of the test
    model = construct("vgg16", classes=1000, hidden=512)
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
    model.eval()
    x = torch.randn(1, 3, 64, 64).clamp(*PAPER_BOUNDS)  # 2x2 features: AdaptiveAvgPool resamples
    engine = RelevanceEngine(model, input_bounds=PAPER_BOUNDS)
    out = engine.run(x, 7, contrast="clrp1", kinds=("target", "dual"))
    with torch.no_grad():
        logits = model(x)
    s = logits[0, 7]
    seeds_t = torch.zeros_like(logits)
    seeds_t[0, 7] = s
    seeds_d = torch.full_like(logits, float(s) / 999)
    seeds_d[0, 7] = 0
    comp = paper_composite(*PAPER_BOUNDS, zr.Norm(stabilizer=1e-9))
    assert_agree(out.input[0], zennit_relevance(model, x, seeds_t, comp))
    assert_agree(out.input[1], zennit_relevance(model, x, seeds_d, comp))
