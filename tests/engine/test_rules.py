"""Each rule against a slow, obviously-correct matrix-form reference on small random layers.

The reference builds the dense matrix of the layer (its Jacobian), forms every contribution
``z_ij`` explicitly and divides by the column sums: no convolution tricks involved.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from clrp_widgets.engine.ops import LinearOp
from clrp_widgets.engine.rules import (
    SINGLE_USE,
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Norm,
    WSquare,
    ZBox,
    ZPlus,
    _transposes,
    stabilize,
)

DT = torch.float64


def seeded_conv(seed: int, out_channels: int, bias: bool = True) -> tuple[nn.Conv2d, LinearOp]:
    """A float64 3x3 conv from 3 channels (padding 1) made after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    module = nn.Conv2d(3, out_channels, 3, padding=1, bias=bias).to(DT)
    return module, LinearOp(module, "c")


def dense(module: nn.Module, in_shape: tuple[int, ...], weight: torch.Tensor) -> torch.Tensor:
    """Matrix (out_numel, in_numel) of the bias-free layer with ``weight``."""
    n_in = int(torch.tensor(in_shape).prod())
    basis = torch.eye(n_in, dtype=DT).reshape(n_in, *in_shape)  # one unit input per row
    return LinearOp(module, "layer").forward(basis, weight).reshape(n_in, -1).T


def bias_vector(
    module: nn.Module, out_shape: torch.Size, bias: torch.Tensor | None
) -> torch.Tensor:
    if bias is None:
        return torch.zeros(out_shape.numel(), dtype=DT)
    view = (-1,) + (1,) * (len(out_shape) - 1)
    return bias.reshape(view).expand(out_shape).reshape(-1)


def propagate(z: torch.Tensor, den: torch.Tensor, r: torch.Tensor, eps: float) -> torch.Tensor:
    """R_i = sum_j z_ij / stabilize(den_j) R_j with z of shape (in, out)."""
    return (z / stabilize(den, eps)[None, :] * r[None, :]).sum(1)


def reference(rule, module, a, r):
    """Slow reference relevance for one sample ``a`` (in_shape) and output relevance ``r``."""
    w = module.weight.detach()
    b = None if module.bias is None else module.bias.detach()
    in_shape = tuple(a.shape)
    W = dense(module, in_shape, w)  # (out, in)
    out_shape = LinearOp(module, "l").forward(a[None], w).shape[1:]
    bvec = bias_vector(module, out_shape, b)
    av = a.reshape(-1)
    ap, an = av.clamp(min=0), av.clamp(max=0)
    Wp, Wn = W.clamp(min=0), W.clamp(max=0)
    rv = r.reshape(-1)
    if isinstance(rule, ZPlus):
        z = ap[:, None] * Wp.T + an[:, None] * Wn.T
        den = z.sum(0) + (bvec.clamp(min=0) if rule.bias else 0)
        # z- fallback: outputs without positive contribution split R over the negative ones
        zn = ap[:, None] * Wn.T + an[:, None] * Wp.T
        fallback = (den <= rule.eps) & (zn.sum(0) < -rule.eps)
        zn_sum = torch.where(fallback, zn.sum(0), -1.0)
        rv_fb = torch.where(fallback, rv, 0.0)
        return propagate(z, den, rv - rv_fb, rule.eps) + (zn / zn_sum * rv_fb).sum(1)
    if isinstance(rule, Epsilon):
        z = av[:, None] * W.T
        return propagate(z, z.sum(0) + bvec, rv, rule.eps)
    if isinstance(rule, AlphaBeta):
        zp = ap[:, None] * Wp.T + an[:, None] * Wn.T
        zn = ap[:, None] * Wn.T + an[:, None] * Wp.T
        rp = propagate(zp, zp.sum(0) + bvec.clamp(min=0), rv, rule.eps)
        rn = propagate(zn, zn.sum(0) + bvec.clamp(max=0), rv, rule.eps)
        return rule.alpha * rp - rule.beta * rn
    if isinstance(rule, Gamma):
        g = rule.gamma
        zout = av @ W.T + bvec
        up, down = W + g * Wp, W + g * Wn
        zp = ap[:, None] * up.T + an[:, None] * down.T
        zn = ap[:, None] * down.T + an[:, None] * up.T
        rp = propagate(zp, zp.sum(0) + bvec + g * bvec.clamp(min=0), rv * (zout > 0), rule.eps)
        rn = propagate(zn, zn.sum(0) + bvec + g * bvec.clamp(max=0), rv * (zout < 0), rule.eps)
        return rp + rn
    if isinstance(rule, ZBox):
        low = torch.as_tensor(rule.low, dtype=DT)
        high = torch.as_tensor(rule.high, dtype=DT)
        if low.ndim == 1:
            low = low.reshape(-1, *([1] * (a.ndim - 1)))
            high = high.reshape(-1, *([1] * (a.ndim - 1)))
        lv, hv = low.expand(in_shape).reshape(-1), high.expand(in_shape).reshape(-1)
        z = av[:, None] * W.T - lv[:, None] * Wp.T - hv[:, None] * Wn.T
        return propagate(z, z.sum(0), rv, rule.eps)
    if isinstance(rule, WSquare):
        z = (W**2).T
        return propagate(z, z.sum(0) + bvec**2, rv, rule.eps)
    if isinstance(rule, Flat):
        z = (W != 0).to(DT).T  # random weights are never exactly zero
        return propagate(z, z.sum(0), rv, rule.eps)
    raise AssertionError(rule)


LAYERS = {
    "linear": (lambda: nn.Linear(7, 5), (7,)),
    "conv": (lambda: nn.Conv2d(3, 4, 3, padding=1), (3, 6, 6)),
    "conv_stride_nopad": (lambda: nn.Conv2d(2, 3, 3, stride=2), (2, 7, 7)),
    "conv_groups_dilation": (
        lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2),
        (4, 6, 6),
    ),
    "conv_stride_pad_even": (lambda: nn.Conv2d(3, 2, 4, stride=3, padding=1), (3, 8, 8)),
    "conv1d": (lambda: nn.Conv1d(2, 3, 3, padding=1), (2, 9)),
}

RULES = [
    ZPlus(),
    ZPlus(eps=1e-6, bias=True),
    Epsilon(eps=1e-6),
    Epsilon(eps=0.25),
    Gamma(gamma=0.25),
    AlphaBeta(alpha=2.0, beta=1.0),
    AlphaBeta(alpha=1.0, beta=0.0),
    ZBox(low=-1.5, high=2.0),
    Flat(),
    WSquare(),
]


@pytest.mark.parametrize("layer", sorted(LAYERS))
@pytest.mark.parametrize("rule", RULES, ids=lambda r: repr(r))
@pytest.mark.parametrize("signed", [False, True], ids=["a>=0", "a_signed"])
def test_rule_matches_matrix_reference(layer, rule, signed):
    torch.manual_seed(3)
    make, in_shape = LAYERS[layer]
    module = make().to(DT)
    a = torch.randn(2, *in_shape, dtype=DT)
    if isinstance(rule, ZBox):
        a = a.clamp(-1.5, 2.0)
    elif not signed:
        a = a.abs()
    op = LinearOp(module, layer)
    w, b = module.weight.detach(), module.bias.detach()
    out = op.forward(a, w, b)
    r = torch.randn_like(out)
    prepared = rule.prepare(w, b)
    state = rule.state(op, a, out, prepared)
    got = rule.relevance(op, a, state, prepared, r)
    assert got.shape == a.shape
    for i in range(a.shape[0]):
        want = reference(rule, module, a[i], r[i]).reshape(in_shape)
        torch.testing.assert_close(got[i], want, rtol=1e-9, atol=1e-9 * want.abs().max())


@pytest.mark.parametrize("rule", RULES, ids=lambda r: repr(r))
def test_single_use_state_gives_the_same_relevance_and_a_kept_state_is_left_intact(rule):
    """A state marked single-use may be overwritten (R / den goes into den); the result must not
    change, and a state without the mark (kept for later passes) must not be touched."""
    module, op = seeded_conv(7, 4)
    a = torch.randn(2, 3, 6, 6, dtype=DT).clamp(-1.5, 2.0)
    w, b = module.weight.detach(), module.bias.detach()
    out = op.forward(a, w, b)
    r = torch.randn_like(out)
    p = rule.prepare(w, b)
    kept = rule.state(op, a, out, p)
    before = {k: v.clone() for k, v in kept.items() if isinstance(v, torch.Tensor)}
    want = rule.relevance(op, a, kept, p, r)
    for k, v in before.items():
        assert torch.equal(kept[k], v), k
    once = {**rule.state(op, a, out, p), SINGLE_USE: True}
    torch.testing.assert_close(rule.relevance(op, a, once, p, r), want, rtol=0, atol=0)


def test_stacked_transposes_equal_separate_ones_in_either_order_and_are_kept():
    module, op = seeded_conv(8, 4, bias=False)
    a = torch.randn(2, 3, 6, 6, dtype=DT)
    s = torch.randn(2, 4, 6, 6, dtype=DT)
    p = ZPlus().prepare(module.weight.detach(), None)
    p["wn"] = module.weight.detach().clamp(max=0)
    for keys in (("wp", "wn"), ("wn", "wp")):
        got = _transposes(op, s, p, keys, a)
        for g, k in zip(got, keys, strict=True):
            torch.testing.assert_close(g, op.transpose(s, p[k], a), rtol=1e-12, atol=1e-12)
    stacks = [k for k in p if k.startswith("stacked:")]
    assert stacks == ["stacked:wn+wp"]  # one stack for both orders, kept with the weights


def test_zbox_per_channel_bounds_match_reference():
    module, op = seeded_conv(4, 4)
    low = torch.tensor([-1.0, -2.0, 0.0], dtype=DT)
    high = torch.tensor([1.0, 0.5, 3.0], dtype=DT)
    rule = ZBox(low=low, high=high)
    a = torch.rand(1, 3, 5, 5, dtype=DT) * (high - low).reshape(1, 3, 1, 1) + low.reshape(
        1, 3, 1, 1
    )
    w = module.weight.detach()
    out = op.forward(a, w, module.bias.detach())
    r = torch.randn_like(out)
    p = rule.prepare(w, module.bias.detach())
    got = rule.relevance(op, a, rule.state(op, a, out, p), p, r)
    want = reference(rule, module, a[0], r[0]).reshape(a.shape[1:])
    torch.testing.assert_close(got[0], want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "pool",
    [nn.AvgPool2d(2), nn.AvgPool2d(3, stride=2, padding=1), nn.AdaptiveAvgPool2d((2, 3))],
    ids=["avg2", "avg3s2p1", "adaptive"],
)
def test_norm_rule_on_pooling_matches_reference(pool):
    torch.manual_seed(5)
    a = torch.rand(1, 2, 6, 6, dtype=DT)
    out = pool(a)
    r = torch.randn_like(out)
    got = Norm(eps=1e-9).relevance(pool, a, out, r)
    P = pool(torch.eye(72, dtype=DT).reshape(72, 2, 6, 6)).reshape(72, -1).T
    z = a.reshape(-1)[:, None] * P.T
    want = propagate(z, z.sum(0), r.reshape(-1), 1e-9).reshape(a.shape)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_norm_pass_identity_passes_relevance():
    pool = nn.AdaptiveAvgPool2d((3, 3))
    a = torch.rand(1, 2, 3, 3, dtype=DT)
    r = torch.randn(1, 2, 3, 3, dtype=DT)
    assert torch.equal(Norm(pass_identity=True).relevance(pool, a, pool(a), r), r)


def test_zplus_is_conservative_without_bias():
    module, op = seeded_conv(6, 5, bias=False)
    a = torch.rand(2, 3, 6, 6, dtype=DT)
    r = torch.rand(2, 5, 6, 6, dtype=DT)
    rule = ZPlus()
    p = rule.prepare(module.weight.detach(), None)
    got = rule.relevance(op, a, rule.state(op, a, None, p), p, r)
    torch.testing.assert_close(got.sum((1, 2, 3)), r.sum((1, 2, 3)), rtol=1e-7, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stabilize_equals_zennits_bit_for_bit_including_signed_zeros(dtype):
    from zennit.core import stabilize as zennit_stabilize

    from clrp_widgets.engine.rules import stabilize_

    values = [
        -0.0,
        0.0,
        1e-12,
        -1e-12,
        1e-9,
        -1e-9,
        1.0,
        -1.0,
        3e38,
        -3e38,
        float("inf"),
        -float("inf"),
    ]
    z = torch.tensor(values, dtype=dtype)
    z = torch.cat([z, torch.randn(4096, dtype=dtype), torch.full((4096,), -0.0, dtype=dtype)])
    want = zennit_stabilize(z, 1e-9)
    assert torch.equal(stabilize(z, 1e-9), want)
    assert torch.equal(stabilize(z, 1e-9).signbit(), want.signbit())
    inplace = z.clone()
    assert stabilize_(inplace, 1e-9) is inplace
    assert torch.equal(inplace, want)
    assert torch.equal(z[:2].signbit(), torch.tensor([True, False]))  # stabilize left z alone
