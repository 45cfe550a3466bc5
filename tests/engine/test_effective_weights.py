"""Rules apply to the weights an operation actually uses (issue 20), checked two ways.

- **Twins**: a layer that makes its weight or padding in ``forward`` (timm's ``StdConv2d``,
  ``ScaledStdConv2d``, ``Conv2dSame``; a weight-norm parametrisation; a LoRA-style Linear
  subclass) and a twin with plain layers that hold the effective weights (and an explicit
  ``F.pad``) give the same maps, under every preset family.
- **An independent oracle**: LRP-0 (``rules="lrp0"``) equals gradient x input from autograd
  on bias-free piecewise-linear models, which conservation cannot check (z+ renormalises, so
  a map made from the wrong weights still sums to the logit). nf_resnet26's convolutions
  standardise their weights: the map from the raw weights was 0.6 of the maximum away.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import timm.layers as tl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import clrp_widgets as cw
from clrp_widgets.engine import RelevanceEngine

sys.path.insert(0, str(Path(__file__).parent))
import zoo_external as zx
from zoo_models import build

B = (-1.0, 1.0)
CASES = [("paper", "lrp"), ("paper", "clrp1"), ("paper", "clrp2"), ("epsilon_gamma_box", "clrp1")]


class Net(nn.Module):
    """conv1 -> ReLU -> conv2 -> ReLU -> pool -> fc, with the layers given."""

    def __init__(self, conv1: nn.Module, conv2: nn.Module, fc: nn.Module) -> None:
        super().__init__()
        self.conv1, self.conv2, self.fc = conv1, conv2, fc

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


class PadThen(nn.Module):
    """``F.pad`` as timm's ``pad_same`` computes it, then a convolution without padding."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        sizes, kernel, stride = x.shape[:-3:-1], self.conv.kernel_size, self.conv.stride
        for size, k, s in zip(sizes, kernel[::-1], stride[::-1], strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return self.conv(F.pad(x, pads))


class LoRALinear(nn.Linear):
    """A Linear subclass with its own forward: ``W + B A`` (a low-rank adapter)."""

    def __init__(self, n_in: int, n_out: int, rank: int = 2) -> None:
        super().__init__(n_in, n_out, bias=False)
        self.lora_a = nn.Parameter(torch.randn(rank, n_in) * 0.3)
        self.lora_b = nn.Parameter(torch.randn(n_out, rank) * 0.3)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight + self.lora_b @ self.lora_a)


def plain(weight: Tensor, like: nn.Conv2d, padding: int | None = None) -> nn.Conv2d:
    conv = nn.Conv2d(
        like.in_channels,
        like.out_channels,
        like.kernel_size,
        like.stride,
        like.padding if padding is None else padding,
        bias=False,
    )
    conv.weight.data.copy_(weight.detach())
    return conv


def standardised(conv: nn.Module, gain: Tensor | None = None) -> Tensor:
    w = conv.weight.reshape(conv.out_channels, -1)
    w = (w - w.mean(1, keepdim=True)) / torch.sqrt(
        w.var(1, unbiased=False, keepdim=True) + conv.eps
    )
    return (w if gain is None else w * gain.reshape(-1, 1)).reshape_as(conv.weight)


def twins(kind: str) -> tuple[nn.Module, nn.Module]:
    """The model with ``kind`` layers and its plain twin, float64 throughout (the twin's
    weights are computed from the float64 parameters)."""
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    try:
        return _twins(kind)
    finally:
        torch.set_default_dtype(torch.float32)


def _twins(kind: str) -> tuple[nn.Module, nn.Module]:
    fc = nn.Linear(8, 4, bias=False)
    if kind == "StdConv2d":
        c1, c2 = tl.StdConv2d(3, 8, 3, padding=1, bias=False), tl.StdConv2d(8, 8, 3, bias=False)
        twin = Net(plain(standardised(c1), c1), plain(standardised(c2), c2), fc)
    elif kind == "ScaledStdConv2d":
        c1 = tl.ScaledStdConv2d(3, 8, 3, padding=1, bias=False)
        c2 = tl.ScaledStdConv2d(8, 8, 3, bias=False)
        with torch.no_grad():
            for c in (c1, c2):
                c.gain.uniform_(0.5, 1.5)
        w1, w2 = (standardised(c, c.gain.flatten() * c.scale) for c in (c1, c2))
        twin = Net(plain(w1, c1), plain(w2, c2), fc)
    elif kind == "Conv2dSame":
        c1 = tl.Conv2dSame(3, 8, 3, stride=2, bias=False)  # the first layer: pads in forward
        c2 = tl.Conv2dSame(8, 8, 4, stride=2, bias=False)  # an even kernel: asymmetric pads
        twin = Net(PadThen(plain(c1.weight, c1)), PadThen(plain(c2.weight, c2)), fc)
    elif kind == "weight_norm":
        c1 = nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 8, 3, padding=1, bias=False))
        c2 = nn.utils.parametrizations.weight_norm(nn.Conv2d(8, 8, 3, bias=False))
        with torch.no_grad():
            for c in (c1, c2):
                c.parametrizations.weight.original0.uniform_(0.5, 2.0)
        twin = Net(plain(c1.weight, c1), plain(c2.weight, c2), fc)
    else:  # LoRA-style Linear subclass
        c1, c2 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Conv2d(8, 8, 3, bias=False)
        lora = LoRALinear(8, 4)
        head = nn.Linear(8, 4, bias=False)
        head.weight.data.copy_(lora.weight.data + lora.lora_b.data @ lora.lora_a.data)
        model = Net(c1, c2, lora).double().eval()
        return model, Net(c1, c2, head).double().eval()
    return Net(c1, c2, fc).double().eval(), twin.double().eval()


KINDS = ["StdConv2d", "ScaledStdConv2d", "Conv2dSame", "weight_norm", "LoRALinear"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_layer_with_its_own_forward_gives_its_twins_maps(kind: str) -> None:
    model, twin = twins(kind)
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model(x), twin(x))  # the twins compute the same function
    for rules, contrast in CASES:
        want = RelevanceEngine(twin, rules, input_bounds=B).run(x, 1, contrast)
        got = RelevanceEngine(model, rules, input_bounds=B).run(x, 1, contrast)
        scale = float(want.input.abs().max())
        assert float((got.input - want.input).abs().max()) <= 1e-8 * scale, (rules, contrast)


@pytest.mark.parametrize("kind", ["StdConv2d", "Conv2dSame"])
def test_the_layer_keeps_its_module_name_and_a_rule_by_that_name(kind: str) -> None:
    model, _ = twins(kind)
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    ex = cw.Explainer(model, input_bounds=B)
    tree = ex.explain(x, 0, layers="all")
    assert {"conv1", "conv2", "fc"} <= set(tree["layers"].children)
    assert not any(name.startswith("conv2:") for name in tree["layers"].children)
    # an override by module name reaches the functional call inside the module
    eps = cw.Explainer(model, input_bounds=B, overrides={"conv2": cw.engine.Epsilon(0.25)})
    other = eps.explain(x, 0, layers=None)
    assert not torch.allclose(
        torch.as_tensor(other["input"]["relevance"].values),
        torch.as_tensor(tree["input"]["relevance"].values),
    )


def test_weights_made_in_forward_are_prepared_once_and_redone_when_they_change() -> None:
    """A standardised weight is a new tensor in every forward pass: the engine compares it by
    value (one cache entry per layer, not one per forward pass), and a changed parameter still
    gives a fresh map."""
    model, _ = twins("StdConv2d")
    engine = RelevanceEngine(model, input_bounds=B)
    for seed in range(4):
        x = torch.rand(
            1, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
        )
        engine.run(x, 0, "lrp")
    assert len(engine._prepared) == 3  # conv1, conv2 (op level) and fc
    with torch.no_grad():
        model.conv2.weight.mul_(-1.0)
    fresh = RelevanceEngine(model, input_bounds=B).run(x, 0, "lrp").input
    torch.testing.assert_close(engine.run(x, 0, "lrp").input, fresh, rtol=0, atol=0)


# ----------------------------------------------------------------------------- LRP-0 oracle

#: bias-free piecewise-linear models (ReLU/LeakyReLU, max and average pooling, BatchNorm
#: without shift, sums, concatenation, nearest upsampling): LRP-0 is gradient x input there
ORACLE = {
    "torchvision": ["alexnet", "vgg11_bn", "resnet18", "densenet121", "inception_v3"],
    "timm": [
        "resnet26d",
        "dla34",
        "dpn68",
        "cspdarknet53",
        "hrnet_w18_small",
        "regnetx_002",
        "repvgg_a0",
        "nf_resnet26",  # ScaledStdConv2d
        "selecsls42b",
        "legacy_xception",
        "res2net50_14w_8s",  # 3x3 average pooling with stride 1 (the z rule, not a pass)
    ],  # timm's vgg11 passes too, in 12 s (a 4096-wide head in float64): torchvision's covers VGG
    "hf": ["resnet", "textnet", "timm_wrapper"],
}


def _oracle_case(library: str, name: str) -> zx.Case:
    if library == "torchvision":
        c = build(name)
        return zx.Case(name, c.model, c.x, c.target, c.target)
    return zx.build_timm(name) if library == "timm" else zx.build_hf(name)


@pytest.mark.parametrize(
    ("library", "name"), [(lib, name) for lib, names in ORACLE.items() for name in names]
)
def test_lrp0_equals_gradient_times_input(library: str, name: str) -> None:
    case = _oracle_case(library, name)
    x = case.x.clone().requires_grad_(True)
    out = case.model(x)
    logits = getattr(out, "logits", out)
    (grad,) = torch.autograd.grad(logits[0, case.target], x)
    want = (grad * case.x).detach()
    got = cw.lrp(case.model, case.x, case.target, rules="lrp0")
    assert float((got - want).abs().max()) <= 1e-8 * float(want.abs().max())
