"""Canonizers: BatchNorm merging and ResNet residual sums, against hand-merged models and zennit."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from engine_nets import assert_untouched, snapshot
from torch import nn
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import EpsilonPlus
from zennit.torchvision import ResNetCanonizer

import clrp_widgets as cw
from clrp_widgets.engine import RelevanceEngine


def randomize_bn(model: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def bn_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Linear(16, 5),
    )
    return randomize_bn(model, 1)


def merged_by_hand(model: nn.Sequential) -> nn.Sequential:
    """The same network with each BatchNorm folded into the preceding layer, BN removed."""
    layers = list(copy.deepcopy(model))
    out = []
    for layer in layers:
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            prev = out[-1]
            scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
            with torch.no_grad():
                shape = (-1,) + (1,) * (prev.weight.ndim - 1)
                prev.weight.mul_(scale.reshape(shape))
                prev.bias.copy_((prev.bias - layer.running_mean) * scale + layer.bias)
            continue
        out.append(layer)
    return nn.Sequential(*out).eval()


@pytest.mark.parametrize("rules", ["paper", "epsilon_plus", "epsilon_gamma_box"])
def test_batchnorm_merge_equals_hand_merged_model(rules):
    model = bn_cnn()
    flat = merged_by_hand(model)
    torch.manual_seed(2)
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(flat(x), model(x), rtol=1e-5, atol=1e-5)
    before = snapshot(model)
    engine = RelevanceEngine(model, rules=rules, input_bounds=(0.0, 1.0))
    ours = engine.run(x, [1, 3], "clrp1", kinds=("target", "contrast"))
    theirs = RelevanceEngine(flat, rules=rules, input_bounds=(0.0, 1.0)).run(
        x, [1, 3], "clrp1", kinds=("target", "contrast")
    )
    torch.testing.assert_close(ours.logits, model(x).detach())
    scale = theirs.input.abs().max()
    assert (ours.input - theirs.input).abs().max() <= 1e-5 * scale
    assert_untouched(model, before)


def test_batchnorm_merge_matches_zennit():
    model = bn_cnn()
    torch.manual_seed(3)
    x = torch.rand(2, 3, 16, 16)
    ours = cw.lrp(model, x, 2, rules="epsilon_plus")
    seeds = torch.zeros(2, 5)
    with torch.no_grad():
        seeds[:, 2] = model(x)[:, 2]
    with Gradient(model, EpsilonPlus(canonizers=[SequentialMergeBatchNorm()])) as attributor:
        _, theirs = attributor(x.clone().requires_grad_(True), seeds)
    assert (ours - theirs).abs().max() <= 1e-4 * theirs.abs().max()


def test_canonizers_none_treats_batchnorm_as_pass():
    model = bn_cnn()
    x = torch.rand(1, 3, 16, 16)
    merged = cw.lrp(model, x, 0, rules="epsilon_plus")
    plain = cw.lrp(model, x, 0, rules="epsilon_plus", canonizers=None)
    assert plain.shape == merged.shape
    assert not torch.allclose(plain, merged)


@pytest.fixture(scope="module", params=["resnet18", "resnet50"])
def resnet(request):
    torch.manual_seed(4)
    model = getattr(torchvision.models, request.param)(num_classes=10)
    return randomize_bn(model, 5)


def test_resnet_matches_zennit_resnet_canonizer(resnet):
    torch.manual_seed(6)
    x = torch.randn(2, 3, 32, 32)
    before = snapshot(resnet)
    ours = cw.lrp(resnet, x, [3, 7], rules="epsilon_plus")
    assert_untouched(resnet, before)
    seeds = torch.zeros(2, 10)
    with torch.no_grad():
        logits = resnet(x)
    seeds[0, 3], seeds[1, 7] = logits[0, 3], logits[1, 7]
    with Gradient(resnet, EpsilonPlus(canonizers=[ResNetCanonizer()])) as attributor:
        _, theirs = attributor(x.clone().requires_grad_(True), seeds)
    assert (ours - theirs).abs().max() <= 1e-4 * theirs.abs().max()


def test_resnet_paper_preset_is_conservative_and_keeps_outputs(resnet):
    torch.manual_seed(7)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    before = snapshot(resnet)
    engine = RelevanceEngine(resnet, input_bounds=(-1.0, 1.0))
    out = engine.run(x, 4, "clrp1", kinds=("target", "dual"), capture="all")
    assert_untouched(resnet, before)
    with torch.no_grad():
        torch.testing.assert_close(out.logits, resnet(x), rtol=1e-5, atol=1e-5)
    total = {name: c.relevance.flatten(2).sum(2) for name, c in out.layers.items()}
    last_conv = "layer2.0.conv3" if "layer2.0.conv3" in total else "layer2.0.conv2"
    cuts = [
        out.input.flatten(2).sum(2),
        *(total[n] for n in ("conv1", "maxpool", "avgpool", "fc")),
        total[last_conv] + total["layer2.0.downsample.0"],  # branch + skip of one block
    ]
    for cut in cuts:
        torch.testing.assert_close(cut, out.seed_sums, rtol=1e-4, atol=0)


def test_batchnorm_merges_are_kept_until_a_weight_changes(monkeypatch):
    """A kept engine merges each BatchNorm once per state of the weights (not once per forward
    pass), and an edit of a BatchNorm's statistics, even through ``.data``, is seen."""
    from clrp_widgets.engine import canonizers, recording

    calls = []
    merge = canonizers.merge_batchnorm

    def counted(*args):
        calls.append(1)
        return merge(*args)

    monkeypatch.setattr(recording, "merge_batchnorm", counted)
    model = bn_cnn()
    x = torch.randn(2, 3, 16, 16)
    engine = RelevanceEngine(model, input_bounds=(-3.0, 3.0), keep_denominators=False)
    first = engine.run(x, 1, "clrp1").input
    assert len(calls) == 3
    again = engine.run(x + 0.1, 1, "clrp1").input  # a new forward pass, same weights
    assert len(calls) == 3
    model[5].running_var.data.mul_(4.0)  # through .data: no version counter moves
    edited = engine.run(x + 0.1, 1, "clrp1").input
    assert len(calls) == 6
    fresh = RelevanceEngine(model, input_bounds=(-3.0, 3.0)).run(x + 0.1, 1, "clrp1").input
    torch.testing.assert_close(edited, fresh, rtol=0, atol=0)
    assert not torch.allclose(edited, again)
    assert first.shape == again.shape
