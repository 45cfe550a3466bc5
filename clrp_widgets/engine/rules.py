"""LRP rules, each as an exact backward formula for one layer.

A rule for Conv/Linear layers works in three stages, so that nothing is recomputed needlessly:

``prepare(weight, bias)``
    the modified weights (W+, W-, gamma-shifted weights, ...), computed once per engine and cached;
``state(op, a, out, prepared)``
    the per-input denominators, computed once per forward pass and shared by every backward pass;
``relevance(op, a, state, prepared, R)``
    relevance at the layer input for relevance ``R`` at its output (linear in ``R``).

A state that no later backward pass will read is marked ``state[SINGLE_USE] = True`` by the
caller; a rule may then overwrite its tensors (the quotient ``R / den`` is written into ``den``:
one activation-sized allocation fewer per layer, and the page faults a fresh one costs).

The formulas and stabilisers follow zennit 0.5 (``stabilize`` below), except that :class:`ZPlus`
ignores the bias by default, as the CLRP paper does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .fallback import SparseFallback, sparse_eligible, sparse_fallback
from .ops import LinearOp

if TYPE_CHECKING:
    from .graph import OpNode
    from .opmode import Op, OpHandler

Prepared = dict[str, Any]
State = dict[str, Any]

#: State key: True when no later backward pass reads this state (its tensors may be reused).
SINGLE_USE = "single_use"


def stabilize(z: Tensor, eps: float) -> Tensor:
    """Shift ``z`` away from zero by ``eps`` along its sign (+eps at zero), as zennit does."""
    return _add_signed_eps(z + 0.0, eps)


def stabilize_(z: Tensor, eps: float) -> Tensor:
    """:func:`stabilize` in place (``z`` is overwritten and returned)."""
    return _add_signed_eps(z.add_(0.0), eps)


def _add_signed_eps(z: Tensor, eps: float) -> Tensor:
    """``z += copysign(eps, z)`` in place, for a ``z`` without ``-0.0`` (adding ``+0.0`` turns it
    into ``+0.0``, which gets ``+eps``). ``copysign`` costs a seventh of
    ``torch.where(z < 0, -eps, eps)`` on CPU (VGG16's first layer: about 1 against 7 ms)."""
    return z.add_(torch.copysign(z.new_full((), eps), z))


def quotient(R: Tensor, st: State) -> Tensor:
    """``R / st["den"]``, written into ``den`` when the state is single-use and shapes allow."""
    den = st["den"]
    if st.get(SINGLE_USE) and den.shape == R.shape and den.dtype == R.dtype:
        return torch.div(R, den, out=den)
    return R / den


class Rule:
    """Base class of every rule."""


class OpRule(Rule):
    """A rule for one tensor operation (op level) that decides itself how the op is recorded.

    ``apply(handler, op)`` runs the op in the recorder (usually ``handler.node(op, self, ...)``)
    and ``relevances(node, R)`` gives each input-dependent operand's relevance. Examples:
    :mod:`.attention`.
    """

    def apply(self, handler: OpHandler, op: Op) -> Any:
        raise NotImplementedError

    def relevances(self, node: OpNode, R: Tensor) -> tuple[Tensor | None, ...]:
        raise NotImplementedError


@dataclass(frozen=True)
class Pass(Rule):
    """Relevance passes unchanged (element-wise layers: activations, merged BatchNorm)."""


@dataclass(frozen=True)
class Gradient(Rule):
    """Relevance follows the plain gradient (max-pooling winner-takes-all, dropout, flatten)."""


@dataclass(frozen=True)
class Gate(Rule):
    """Element-wise product ``a * b`` (op level): operand ``gate`` is a gate, held constant, and all
    relevance goes to the other operand (squeeze-excitation, attention-style gating)."""

    gate: int = 1


@dataclass(frozen=True)
class Norm(Rule):
    """The z rule for parameter-free linear layers (average pooling, residual sums).

    ``R_i = a_i * (df/da_i)^T (R / stabilize(f(a)))``. With ``pass_identity=True`` a layer that
    is the identity on this input (``AdaptiveAvgPool2d`` at identity size: its output equals its
    input) passes relevance. A 3x3 average pooling with stride 1 keeps the shape but is no
    identity: it takes the z rule.
    """

    eps: float = 1e-6
    pass_identity: bool = False

    def relevance(self, module: nn.Module, a: Tensor, out: Tensor, R: Tensor) -> Tensor:
        if self.pass_identity and is_identity(a, out):
            return R
        s = R / stabilize(out, self.eps)
        with torch.enable_grad():
            a_req = a.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(module.forward(a_req), a_req, s)
        return a * g


def is_identity(a: Tensor, out: Tensor) -> bool:
    """Whether a layer gave back its input unchanged (shape and values)."""
    return a.shape == out.shape and bool(torch.equal(a, out))


class LinearRule(Rule):
    """A rule for Conv/Linear layers (see the module docstring for the three stages)."""

    def prepare(self, weight: Tensor, bias: Tensor | None) -> Prepared:
        raise NotImplementedError

    def state(self, op: LinearOp, a: Tensor, out: Tensor | None, p: Prepared) -> State:
        raise NotImplementedError

    def relevance(self, op: LinearOp, a: Tensor, st: State, p: Prepared, R: Tensor) -> Tensor:
        raise NotImplementedError


def _signed_parts(a: Tensor) -> tuple[Tensor, Tensor | None]:
    """Positive part of ``a``, and its negative part or None when ``a >= 0`` everywhere."""
    if bool(a.amin() < 0):
        return a.clamp(min=0), a.clamp(max=0)
    return a, None


def _pos(b: Tensor | None) -> Tensor | None:
    return None if b is None else b.clamp(min=0)


def _neg(b: Tensor | None) -> Tensor | None:
    return None if b is None else b.clamp(max=0)


@dataclass(frozen=True)
class ZPlus(LinearRule):
    """z+ rule: ``R_i = (a_i+ w_ij+ + a_i- w_ij-) / (z_j+ + eps) R_j``.

    ``bias=False`` (default) ignores the bias as the CLRP paper does; ``bias=True`` adds the
    positive bias to the denominator, as zennit's ``ZPlus``. For ``a >= 0`` this is the paper's
    ``a_i w_ij+ / (sum_i a_i w_ij+ + eps)``.

    z- fallback: where z+ is undefined, i.e. an output with ``R_j != 0`` has no positive
    contribution (``z_j+ <= eps``, which signed inputs cause: linear bottlenecks, SiLU, residual
    streams), ``R_j`` is split in proportion to the negative contributions
    ``a_i+ w_ij- + a_i- w_ij+`` (the z rule on that output), so it is conserved instead of dropped.
    If those sum to ``>= -eps`` too, ``R_j`` stays unexplained (the conservation guard warns).
    Every output where z+ is defined keeps the z+ result; ReLU nets (``R_j = 0`` wherever
    ``z_j+ = 0``) never reach the fallback, and its cost is paid only when they do (at a few
    outputs, from their gathered receptive fields: :mod:`.fallback`).
    """

    eps: float = 1e-9
    bias: bool = False

    def prepare(self, weight: Tensor, bias: Tensor | None) -> Prepared:
        # W- is kept only once an input with negative values needs it (ReLU nets never do).
        # eps rides in the bias of the denominators' forward pass (fused: no extra pass over z)
        eps = torch.full(weight.shape[:1], self.eps, dtype=weight.dtype, device=weight.device)
        den_bias = eps + bias.clamp(min=0) if self.bias and bias is not None else eps
        return {"w": weight, "wp": weight.clamp(min=0), "den_bias": den_bias}

    def state(self, op: LinearOp, a: Tensor, out: Tensor | None, p: Prepared) -> State:
        ap, an = _signed_parts(a)
        z = op.forward(ap, p["wp"], p["den_bias"])
        if an is not None:
            if "wn" not in p:
                p["wn"] = p["w"].clamp(max=0)
            z = z + op.forward(an, p["wn"])
        return {"ap": ap, "an": an, "den": z}  # z+ + eps >= eps: equals stabilize(z+, eps)

    def relevance(self, op: LinearOp, a: Tensor, st: State, p: Prepared, R: Tensor) -> Tensor:
        fallback = self._fallback(op, a, st, p, R)  # reads den: before the quotient may reuse it
        s = quotient(R, st)
        if isinstance(fallback, SparseFallback):
            s = s.contiguous()
            s.view(-1).index_fill_(0, fallback.outputs, 0)  # their z+ quotient is void
            rel = self._zplus(op, a, st, p, s).contiguous()
            return rel.view(-1).index_add_(0, fallback.inputs, fallback.values).view(rel.shape)
        if fallback is not None:
            return self._with_fallback(op, a, st, p, R, s, fallback)
        return self._zplus(op, a, st, p, s)

    def _zplus(self, op: LinearOp, a: Tensor, st: State, p: Prepared, s: Tensor) -> Tensor:
        if st["an"] is None:
            return op.transpose(s, p["wp"], a).mul_(st["ap"])
        gp, gn = _transposes(op, s, p, ("wp", "wn"), a)
        return st["ap"] * gp + st["an"] * gn

    def _fallback(
        self, op: LinearOp, a: Tensor, st: State, p: Prepared, R: Tensor
    ) -> Tensor | SparseFallback | None:
        """The outputs that take the z- fallback (a mask, or their part of the relevance when
        they are few: :mod:`.fallback`), or None when no relevance needs it."""
        if "undefined" not in st:  # once per forward pass: one reduction, no mask when none
            den, tol = st["den"], 2 * self.eps  # z+ <= eps (den = z+ + eps)
            st["undefined"] = den <= tol if bool(den.amin() <= tol) else None
        undefined = st["undefined"]
        if undefined is None:
            return None  # the hot path: no extra forward or transpose
        candidates = undefined & (R != 0)
        count = int(candidates.sum())
        if count == 0:
            return None
        if "wn" not in p:
            p["wn"] = p["w"].clamp(max=0)
        if "zn" not in st:  # the dense negative parts, unless a kept state already has them
            if sparse_eligible(op, a, p["w"], count, candidates.numel()):
                return sparse_fallback(op, a, p["wp"], p["wn"], R, candidates, self.eps)
            zn = op.forward(st["ap"], p["wn"])
            if st["an"] is not None:
                zn = zn + op.forward(st["an"], p["wp"])
            st["zn"] = zn
        return undefined & (st["zn"] < -self.eps)

    def _with_fallback(
        self,
        op: LinearOp,
        a: Tensor,
        st: State,
        p: Prepared,
        R: Tensor,
        s: Tensor,
        fallback: Tensor,
    ) -> Tensor:
        """z+ where it is defined plus the z rule on the negative contributions elsewhere."""
        sp = s.masked_fill(fallback, 0)
        sn = torch.where(fallback, R, 0) / torch.where(fallback, st["zn"], -1)
        wp, wn = p["wp"], p["wn"]
        if st["an"] is None:
            return st["ap"] * (op.transpose(sp, wp, a) + op.transpose(sn, wn, a))
        g_pp, g_pn = _transposes(op, sp, p, ("wp", "wn"), a)
        g_nn, g_np = _transposes(op, sn, p, ("wn", "wp"), a)
        return st["ap"] * (g_pp + g_nn) + st["an"] * (g_pn + g_np)


@dataclass(frozen=True)
class Epsilon(LinearRule):
    """epsilon rule: ``R_i = a_i w_ij / stabilize(z_j, eps) R_j``, ``z_j`` including the bias."""

    eps: float = 1e-6

    def prepare(self, weight: Tensor, bias: Tensor | None) -> Prepared:
        return {"w": weight, "b": bias}

    def state(self, op: LinearOp, a: Tensor, out: Tensor | None, p: Prepared) -> State:
        z = op.forward(a, p["w"], p["b"]) if out is None else out
        return {"den": stabilize(z, self.eps)}

    def relevance(self, op: LinearOp, a: Tensor, st: State, p: Prepared, R: Tensor) -> Tensor:
        return op.transpose(quotient(R, st), p["w"], a).mul_(a)


@dataclass(frozen=True)
class Gamma(LinearRule):
    """Generalised gamma rule, exactly as zennit's ``Gamma`` (positive/negative outputs apart)."""

    gamma: float = 0.25
    eps: float = 1e-6

    def prepare(self, weight: Tensor, bias: Tensor | None) -> Prepared:
        g = self.gamma
        return {
            "w_up": weight + g * weight.clamp(min=0),
            "w_down": weight + g * weight.clamp(max=0),
            "b_up": None if bias is None else bias + g * bias.clamp(min=0),
            "b_down": None if bias is None else bias + g * bias.clamp(max=0),
            "w": weight,
            "b": bias,
        }

    def state(self, op: LinearOp, a: Tensor, out: Tensor | None, p: Prepared) -> State:
        ap, an = _signed_parts(a)
        z = op.forward(a, p["w"], p["b"]) if out is None else out
        pos = op.forward(ap, p["w_up"], p["b_up"])
        neg = op.forward(ap, p["w_down"], p["b_down"])
        if an is not None:
            pos = pos + op.forward(an, p["w_down"])
            neg = neg + op.forward(an, p["w_up"])
        return {
            "ap": ap,
            "an": an,
            "dp": (z > 0).to(z) / stabilize(pos, self.eps),
            "dn": (z < 0).to(z) / stabilize(neg, self.eps),
        }

    def relevance(self, op: LinearOp, a: Tensor, st: State, p: Prepared, R: Tensor) -> Tensor:
        sp, sn = R * st["dp"], R * st["dn"]
        up, down = p["w_up"], p["w_down"]
        if st["an"] is None:
            return st["ap"] * (op.transpose(sp, up, a) + op.transpose(sn, down, a))
        g_pu, g_pd = _transposes(op, sp, p, ("w_up", "w_down"), a)
        g_nd, g_nu = _transposes(op, sn, p, ("w_down", "w_up"), a)
        return st["ap"] * (g_pu + g_nd) + st["an"] * (g_pd + g_nu)


@dataclass(frozen=True)
class AlphaBeta(LinearRule):
    """alpha-beta rule, exactly as zennit's ``AlphaBeta`` (positive bias in the alpha term)."""

    alpha: float = 2.0
    beta: float = 1.0
    eps: float = 1e-6

    def prepare(self, weight: Tensor, bias: Tensor | None) -> Prepared:
        return {
            "wp": weight.clamp(min=0),
            "wn": weight.clamp(max=0),
            "bp": _pos(bias),
            "bn": _neg(bias),
        }

    def state(self, op: LinearOp, a: Tensor, out: Tensor | None, p: Prepared) -> State:
        ap, an = _signed_parts(a)
        pos = op.forward(ap, p["wp"], p["bp"])
        neg = op.forward(ap, p["wn"], p["bn"])
        if an is not None:
            pos = pos + op.forward(an, p["wn"])
            neg = neg + op.forward(an, p["wp"])
        return {
            "ap": ap,
            "an": an,
            "dp": 1.0 / stabilize(pos, self.eps),
            "dn": 1.0 / stabilize(neg, self.eps),
        }

    def relevance(self, op: LinearOp, a: Tensor, st: State, p: Prepared, R: Tensor) -> Tensor:
        sp, sn = R * st["dp"], R * st["dn"]
        if st["an"] is None:
            gpp = op.transpose(sp, p["wp"], a)
            gnn = op.transpose(sn, p["wn"], a)
            return st["ap"] * (self.alpha * gpp - self.beta * gnn)
        gpp, gpn = _transposes(op, sp, p, ("wp", "wn"), a)
        gnn, gnp = _transposes(op, sn, p, ("wn", "wp"), a)
        return self.alpha * (st["ap"] * gpp + st["an"] * gpn) - self.beta * (
            st["ap"] * gnn + st["an"] * gnp
        )


@dataclass(frozen=True, eq=False)
class ZBox(LinearRule):
    """Bounded-input rule z^B: ``R_i = (a_i w_ij - l_i w_ij+ - h_i w_ij-) / sum_i(.) R_j``.

    ``low``/``high`` are scalars or per-channel tensors of shape ``(C,)`` (or anything that
    broadcasts to one input sample). The bias cancels out, as in zennit's ``ZBox``. With
    ``w = w+ + w-`` the numerator is ``(a_i - l_i) w_ij+ + (a_i - h_i) w_ij-``: two transposed
    passes (``w+``, ``w-``) instead of three.
    """

    low: float | Tensor = 0.0
    high: float | Tensor = 1.0
    eps: float = 1e-9

    def prepare(self, weight: Tensor, bias: Tensor | None) -> Prepared:
        return {"w": weight, "wp": weight.clamp(min=0), "wn": weight.clamp(max=0), "bounds": {}}

    def state(self, op: LinearOp, a: Tensor, out: Tensor | None, p: Prepared) -> State:
        key = (tuple(a.shape[1:]), a.dtype, a.device)
        if key not in p["bounds"]:
            low, high = expand_bound(self.low, a), expand_bound(self.high, a)
            p["bounds"][key] = (low, high, self._offset(op, p, low, high))
        return self._state(op, a, p, *p["bounds"][key])

    def bounded_state(
        self, op: LinearOp, a: Tensor, p: Prepared, low: Tensor, high: Tensor
    ) -> State:
        """:meth:`state` for bounds ``low``/``high`` of ``a``'s shape that came with the data
        (padding and other transforms of the model input before this layer: :mod:`.bounds`)."""
        return self._state(op, a, p, low, high, self._offset(op, p, low, high))

    @staticmethod
    def _offset(op: LinearOp, p: Prepared, low: Tensor, high: Tensor) -> Tensor:
        return op.forward(low, p["wp"]) + op.forward(high, p["wn"])

    def _state(
        self, op: LinearOp, a: Tensor, p: Prepared, low: Tensor, high: Tensor, offset: Tensor
    ) -> State:
        z = op.forward(a, p["w"]).sub_(offset)  # a fresh tensor: stabilised in place
        return {"above_low": a - low, "below_high": a - high, "den": stabilize_(z, self.eps)}

    def relevance(self, op: LinearOp, a: Tensor, st: State, p: Prepared, R: Tensor) -> Tensor:
        gp, gn = _transposes(op, quotient(R, st), p, ("wp", "wn"), a)
        return (gp * st["above_low"]).addcmul_(gn, st["below_high"])


@dataclass(frozen=True)
class Flat(LinearRule):
    """flat rule: inputs and weights set to one, bias to zero (zennit's ``Flat``)."""

    eps: float = 1e-6

    def prepare(self, weight: Tensor, bias: Tensor | None) -> Prepared:
        return {"w": torch.ones_like(weight), "b": None}

    def state(self, op: LinearOp, a: Tensor, out: Tensor | None, p: Prepared) -> State:
        ones = torch.ones_like(a[:1])
        return {"den": stabilize(op.forward(ones, p["w"], p["b"]), self.eps)}

    def relevance(self, op: LinearOp, a: Tensor, st: State, p: Prepared, R: Tensor) -> Tensor:
        return op.transpose(R / st["den"], p["w"], a)


@dataclass(frozen=True)
class WSquare(Flat):
    """w^2 rule: inputs set to one, squared weights and squared bias (zennit's ``WSquare``)."""

    def prepare(self, weight: Tensor, bias: Tensor | None) -> Prepared:
        return {"w": weight**2, "b": None if bias is None else bias**2}


def expand_bound(bound: float | Tensor, a: Tensor) -> Tensor:
    """Broadcast a scalar or per-channel bound to one sample of ``a``: ``(1, *a.shape[1:])``."""
    b = torch.as_tensor(bound, dtype=a.dtype, device=a.device)
    if b.ndim == 1 and a.ndim > 2 and b.numel() == a.shape[1]:
        b = b.reshape(1, -1, *([1] * (a.ndim - 2)))
    return b.expand(1, *a.shape[1:]).contiguous()


def _transposes(
    op: LinearOp, s: Tensor, p: Prepared, keys: tuple[str, ...], a: Tensor
) -> list[Tensor]:
    """``[op.transpose(s, p[k]) for k in keys]``, as one call on stacked weights for convolutions
    without groups. The stack is kept in ``p`` (rebuilt with it when a weight changes), in one
    order per set of weights. A Linear layer's transpose is a matmul that reads each weight once
    anyway, so stacking would only add a copy of every weight (most of the time of a ConvNeXt's or
    ViT's MLP layers at small batch)."""
    if not op.is_conv or op.groups != 1:
        return [op.transpose(s, p[k], a) for k in keys]
    order = sorted(keys)
    name = "stacked:" + "+".join(order)
    stacked = p.get(name)
    if stacked is None:
        stacked = p[name] = torch.cat([p[k] for k in order], dim=1)
    n = p[keys[0]].shape[1]
    shape = torch.Size((*a.shape[:1], n * len(keys), *a.shape[2:]))
    parts = dict(zip(order, op.transpose(s, stacked, shape).split(n, dim=1), strict=True))
    return [parts[k] for k in keys]
