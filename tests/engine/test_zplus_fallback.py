"""z+ with a z- fallback for outputs that have no positive contribution (signed inputs).

z+ divides by ``z_j+`` (the sum of positive contributions); where that is zero and ``R_j != 0``
(signed inputs: linear bottlenecks, SiLU, residual streams) the old rule dropped ``R_j``. ZPlus
now splits such ``R_j`` over the negative contributions and is unchanged everywhere else.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from clrp_widgets.engine.ops import LinearOp
from clrp_widgets.engine.rules import ZPlus

DT = torch.float64


def old_zplus(
    op: LinearOp, a: torch.Tensor, w: torch.Tensor, R: torch.Tensor, eps: float
) -> torch.Tensor:
    """The z+ formula before the fallback (copied), through autograd: no shared code."""
    a_req = a.detach().clone().requires_grad_(True)
    with torch.no_grad():
        z = op.forward(a.clamp(min=0), w.clamp(min=0)) + op.forward(a.clamp(max=0), w.clamp(max=0))
    s = (R / (z + eps)).detach()
    gp = torch.autograd.grad(op.forward(a_req, w.clamp(min=0)), a_req, s)[0]
    gn = torch.autograd.grad(op.forward(a_req, w.clamp(max=0)), a_req, s)[0]
    return a.clamp(min=0) * gp + a.clamp(max=0) * gn


def reference_loop(a: torch.Tensor, w: torch.Tensor, R: torch.Tensor, eps: float) -> torch.Tensor:
    """Slow per-(i, j) z+ with the z- fallback, for one sample of a bias-free linear layer."""
    n_out, n_in = w.shape
    out = torch.zeros(n_in, dtype=DT)
    for j in range(n_out):
        pos, neg = [], []
        for i in range(n_in):
            ai, wji = a[i].item(), w[j, i].item()
            pos.append(max(ai, 0) * max(wji, 0) + min(ai, 0) * min(wji, 0))
            neg.append(max(ai, 0) * min(wji, 0) + min(ai, 0) * max(wji, 0))
        zp, zn = sum(pos), sum(neg)
        for i in range(n_in):
            if zp > eps or zn >= -eps:
                out[i] += pos[i] / (zp + eps) * R[j].item()
            else:
                out[i] += neg[i] / zn * R[j].item()
    return out


def apply_rule(rule: ZPlus, module: nn.Module, a: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    op = LinearOp(module, "layer")
    p = rule.prepare(module.weight.detach(), None)
    st = rule.state(op, a, None, p)
    return rule.relevance(op, a, st, p, R)


def test_hand_computed_output_without_positive_contribution() -> None:
    # a = (2, -1); output 0: w = (1, 1) -> contributions 2 (pos) and -1 (neg): z+ = 2
    # output 1: w = (-1, 1) -> contributions -2 and -1: z+ = 0, z- = -3
    layer = nn.Linear(2, 2, bias=False).to(DT)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, 1.0]], dtype=DT))
    a = torch.tensor([[2.0, -1.0]], dtype=DT)
    R = torch.tensor([[1.0, 3.0]], dtype=DT)
    eps = 1e-9
    old = old_zplus(LinearOp(layer, "layer"), a, layer.weight.detach(), R, eps)
    assert torch.allclose(old, torch.tensor([[2 / (2 + eps), 0.0]], dtype=DT))  # R_1 = 3 dropped
    new = apply_rule(ZPlus(eps=eps), layer, a, R)
    # output 0 as before (all to input 0); output 1: 3 split as (-2, -1) / -3 -> (2, 1)
    expected = torch.tensor([[2 / (2 + eps) + 2.0, 1.0]], dtype=DT)
    torch.testing.assert_close(new, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(new[0], reference_loop(a[0], layer.weight.detach(), R[0], eps))
    assert abs(new.sum().item() - R.sum().item()) < 1e-8  # conservative


def test_random_signed_linear_matches_reference_loop() -> None:
    g = torch.Generator().manual_seed(0)
    layer = nn.Linear(5, 7, bias=False).to(DT)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(7, 5, generator=g, dtype=DT))
    a = torch.randn(3, 5, generator=g, dtype=DT)
    a[:, 0] = 0.0
    R = torch.randn(3, 7, generator=g, dtype=DT)
    new = apply_rule(ZPlus(eps=1e-9), layer, a, R)
    for b in range(3):
        ref = reference_loop(a[b], layer.weight.detach(), R[b], 1e-9)
        torch.testing.assert_close(new[b], ref, rtol=0, atol=1e-12)


def test_output_with_no_contribution_at_all_keeps_old_result() -> None:
    # a = (0, 0): z+ = z- = 0 for every output: the relevance is unexplainable, as before
    layer = nn.Linear(2, 2, bias=False).to(DT)
    a = torch.zeros(1, 2, dtype=DT)
    R = torch.ones(1, 2, dtype=DT)
    assert torch.equal(apply_rule(ZPlus(eps=1e-9), layer, a, R), torch.zeros(1, 2, dtype=DT))


def test_relu_conv_net_unchanged() -> None:
    # non-negative input, relevance zero wherever z+ = 0 (ReLU nets): identical to the old formula
    g = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False).to(DT)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(6, 4, 3, 3, generator=g, dtype=DT))
    a = torch.randn(2, 4, 8, 8, generator=g, dtype=DT).clamp(min=0)
    a[:, :, :3] = 0.0  # outputs with z+ = 0 (and R = 0 there, as behind a ReLU)
    out = conv(a)
    R = torch.randn(out.shape, generator=g, dtype=DT) * out.clamp(min=0)
    op = LinearOp(conv, "layer")
    old = old_zplus(op, a, conv.weight.detach(), R, 1e-9)
    new = apply_rule(ZPlus(eps=1e-9), conv, a, R)
    torch.testing.assert_close(new, old, rtol=0, atol=1e-12)


def test_signed_depthwise_conv_is_conservative() -> None:
    g = torch.Generator().manual_seed(2)
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False).to(DT)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(4, 1, 3, 3, generator=g, dtype=DT))
    a = torch.randn(2, 4, 1, 1, generator=g, dtype=DT)  # one live tap: half the outputs z+ = 0
    R = torch.randn(2, 4, 1, 1, generator=g, dtype=DT)
    new = apply_rule(ZPlus(eps=1e-9), conv, a, R)
    torch.testing.assert_close(new.sum((1, 2, 3)), R.sum((1, 2, 3)), rtol=0, atol=1e-8)


def _signed_case(module: nn.Module, in_shape: tuple[int, ...], seed: int) -> tuple:
    """Signed, partly zero inputs (many outputs without positive contribution) and relevance."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        module.weight.copy_(torch.randn(module.weight.shape, generator=g, dtype=DT))
    a = torch.randn(in_shape, generator=g, dtype=DT)
    a = a * (torch.rand(in_shape, generator=g, dtype=DT) < 0.3)
    out = LinearOp(module, "layer").forward(a, module.weight.detach())
    return a, torch.randn(out.shape, generator=g, dtype=DT)


FALLBACK_LAYERS = {
    "conv1d_stride2": (nn.Conv1d(3, 4, 3, stride=2, padding=1, bias=False), (2, 3, 11)),
    "conv2d_dilated": (nn.Conv2d(3, 5, 3, padding=2, dilation=2, bias=False), (2, 3, 7, 6)),
    "conv2d_groups": (nn.Conv2d(4, 6, (3, 2), stride=(2, 1), groups=2, bias=False), (1, 4, 7, 5)),
    "conv2d_depthwise": (nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False), (2, 6, 5, 5)),
    "conv3d": (nn.Conv3d(2, 3, 2, padding=1, bias=False), (1, 2, 3, 4, 3)),
    "linear_tokens": (nn.Linear(6, 9, bias=False), (2, 3, 6)),
}


@pytest.mark.parametrize("name", list(FALLBACK_LAYERS))
def test_sparse_fallback_equals_the_dense_one(name: str, monkeypatch) -> None:
    """The fallback from gathered receptive fields gives the dense passes' relevance."""
    from clrp_widgets.engine import fallback

    module, in_shape = FALLBACK_LAYERS[name]
    module = module.to(DT)
    a, R = _signed_case(module, in_shape, seed=len(name))
    rule = ZPlus(eps=1e-12)
    results, states = {}, {}
    for path, share in (("dense", 0.0), ("sparse", 1.0)):
        monkeypatch.setattr(fallback, "MAX_SHARE", dict.fromkeys(fallback.MAX_SHARE, share))
        op = LinearOp(module, "layer")
        p = rule.prepare(module.weight.detach(), None)
        states[path] = rule.state(op, a, None, p)
        results[path] = rule.relevance(op, a, states[path], p, R)
    assert "zn" in states["dense"] and "zn" not in states["sparse"]  # each path was taken
    torch.testing.assert_close(results["sparse"], results["dense"], rtol=1e-12, atol=1e-12)
    plain = old_zplus(LinearOp(module, "layer"), a, module.weight.detach(), R, 1e-12)
    assert not torch.allclose(results["sparse"], plain)  # the fallback changed something
    # conserved, except at outputs whose receptive field contributes nothing at all
    field = LinearOp(module, "layer").forward(a.abs(), module.weight.detach().abs())
    dims = tuple(range(1, R.ndim))
    kept = torch.where(field > 0, R, 0.0).sum(dims)
    torch.testing.assert_close(results["sparse"].sum(dims), kept, rtol=1e-6, atol=0.0)  # eps


def test_sparse_fallback_matches_the_reference_loop(monkeypatch) -> None:
    from clrp_widgets.engine import fallback

    monkeypatch.setattr(fallback, "MAX_SHARE", dict.fromkeys(fallback.MAX_SHARE, 1.0))
    layer = nn.Linear(5, 7, bias=False).to(DT)
    a, R = _signed_case(layer, (1, 5), seed=3)
    new = apply_rule(ZPlus(eps=1e-9), layer, a, R)
    torch.testing.assert_close(new[0], reference_loop(a[0], layer.weight.detach(), R[0], 1e-9))


def test_a_few_undefined_outputs_take_the_sparse_path_by_default() -> None:
    """A depthwise layer where a fraction of a percent of outputs lack positive contribution."""
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False).to(DT)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g, dtype=DT))
    a = torch.randn(1, 8, 40, 40, generator=g, dtype=DT)
    a[0, 2, 10:13, 10:13] = 0.0  # one output of channel 2 sees only zeros but its centre tap:
    a[0, 2, 11, 11] = -1.0 if conv.weight[2, 0, 1, 1] > 0 else 1.0  # a negative contribution
    R = torch.randn(1, 8, 40, 40, generator=g, dtype=DT)
    op, rule = LinearOp(conv, "layer"), ZPlus(eps=1e-9)
    p = rule.prepare(conv.weight.detach(), None)
    st = rule.state(op, a, None, p)
    undefined = int((st["den"] <= 2e-9).sum())
    assert 1 <= undefined <= R.numel() / 16
    rel = rule.relevance(op, a, st, p, R)
    assert "zn" not in st  # sparse: no dense forward pass of the negative parts
    torch.testing.assert_close(rel.sum(), R.sum(), rtol=1e-6, atol=0.0)
