"""Op-level rules for transformers: AttnLRP and CP-LRP.

References
----------
- **AttnLRP**: R. Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance Propagation
  for Transformers", ICML 2024 (reference code: LXT, ``lxt.efficient``).
- **CP-LRP**: A. Ali et al., "XAI for Transformers: Better Explanations through Conservative
  Propagation", ICML 2022.

Rules (each an :class:`~.rules.OpRule`, set per op by the ``"attnlrp"``/``"cp_lrp"`` presets):

:class:`SoftmaxRule`
    AttnLRP's softmax rule (Achtibat et al., Prop. 3.1, bias-free linearisation):
    ``R_in = x * (R_out - s * sum(R_out))`` along the softmax axis, ``x`` its input, ``s`` its
    output (``x = -inf``, a masked score, gets 0).
:class:`ProductRule`
    A product of input-dependent operands (``matmul``, ``bmm``, ``einsum``: QK^T, AV): AttnLRP's
    uniform rule (Achtibat et al., eq. 7), the epsilon rule on each operand with the others held
    constant, each share divided by the number of operands:
    ``R_a = a * (dz/da)^T (R / stabilize(z)) / n``. With one input-dependent operand it is the
    z rule (the other operand is a constant matrix).
:class:`GatedProduct`
    The ``"paper"`` preset's products: an operand made by a gate (softmax) held constant as in
    CP-LRP, the z rule on the other; AttnLRP's uniform rule where neither is a gate.
:class:`HoldConstant`
    CP-LRP (Ali et al., section 3): the attention (softmax output) is a constant; relevance does
    not enter the softmax, so Q and K get none and AV's relevance all goes to V (z rule).
:class:`LayerNormRule`
    LayerNorm with the normaliser (standard deviation) held constant (Achtibat et al. sec. 3.3;
    Ali et al. "LN-rule"), as LXT's ``layer_norm_forward``: the epsilon rule on the remaining
    affine map ``(x - mean(x)) / std * w + b``; the bias ``b`` absorbs its share.
:class:`AffineSum`
    Sums: with two input-dependent operands the proportional split (z rule, residual streams);
    with one (``x + c``: position embeddings, attention biases and masks) the constant is a
    bias and absorbs its share, ``R_x = x / (x + c) * R``, as the Gradient x Input form of LXT
    does. Relevance never flows into parameters: the class token (concatenated, not added)
    absorbs what reaches its slot.
:class:`Decompose`
    ``F.multi_head_attention_forward`` and ``F.scaled_dot_product_attention`` are single fused
    calls; they are re-run as ``linear``/``bmm``/``softmax``/``bmm``/``linear`` (batch first, the
    heads as channels: an attention map is ``(N, heads, queries, keys)``) so that each step gets
    its rule and is a layer (``<module>:softmax`` is the attention map).

These presets are **not conservative**, exactly as AttnLRP/LXT: biases (epsilon rule), LayerNorm's
shift, additive constants and the class token absorb relevance; the conservation guard is off
for them, and each layer's ``conservation`` attribute shows how much of the seed is left there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.nn import functional as F

from .errors import UnsupportedLayerError
from .rules import Norm, OpRule, stabilize

if TYPE_CHECKING:
    from .graph import OpNode
    from .opmode import Op, OpHandler

_SOFTMAX_ARGS = ("input", "dim")
_LN_ARGS = ("input", "normalized_shape", "weight", "bias", "eps")


def _bound(call: Any, names: tuple[str, ...]) -> dict[str, Any]:
    bound = dict(zip(names, call.args, strict=False))
    bound.update(call.kwargs)
    return bound


@dataclass(frozen=True)
class SoftmaxRule(OpRule):
    """AttnLRP softmax rule ``R_in = x * (R_out - s * sum(R_out))`` (Achtibat et al. 2024)."""

    def apply(self, handler: OpHandler, op: Op) -> Any:
        if len(op.signals) != 1:
            handler.refuse(op, "a softmax of more than one input-dependent tensor")
        return handler.node(op, self, layer=True, gate=True)

    def relevances(self, node: OpNode, R: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = node._intact_signals()
        dim = _bound(node.call, _SOFTMAX_ARGS).get("dim")
        if dim is None:
            raise UnsupportedLayerError(f"softmax {node.name!r} without dim= is ambiguous")
        s = node.output().to(R.dtype)
        rel = x * (R - s * R.sum(dim, keepdim=True))
        return (torch.where(torch.isfinite(x), rel, torch.zeros_like(rel)),)


@dataclass(frozen=True)
class HoldConstant(OpRule):
    """CP-LRP: the op's output is a constant (no relevance enters it; Ali et al. 2022)."""

    def apply(self, handler: OpHandler, op: Op) -> Any:
        return op.func(*op.args, **op.kwargs)

    def relevances(self, node: OpNode, R: Tensor) -> tuple[Tensor | None, ...]:
        raise AssertionError("HoldConstant makes no node")


@dataclass(frozen=True)
class ProductRule(OpRule):
    """AttnLRP uniform rule on products of activations (``matmul``, ``bmm``, ``einsum``)."""

    eps: float = 1e-6

    def apply(self, handler: OpHandler, op: Op) -> Any:
        if len(op.signals) > 2:
            handler.refuse(op, "a product of more than two input-dependent tensors")
        return handler.node(op, self, layer=True)

    def relevances(self, node: OpNode, R: Tensor) -> tuple[Tensor | None, ...]:
        values = node._intact_signals()
        with torch.enable_grad():
            leaves = [v.detach().requires_grad_(True) for v in values]
            z = node.call(*leaves)
            s = R / stabilize(z.detach(), self.eps)
            grads = torch.autograd.grad(z, leaves, s, allow_unused=True)
        share = 1.0 / len(values)
        return tuple(
            torch.zeros_like(v) if g is None else v * g * share
            for v, g in zip(values, grads, strict=True)
        )


@dataclass(frozen=True)
class GatedProduct(OpRule):
    """A product (``matmul``, ``bmm``, ``einsum``) under the conservative ``"paper"`` preset.

    An operand made by a gate (a softmax: the attention map) is held constant, as CP-LRP holds
    the attention (Ali et al. 2022), and the z rule gives the other operand (V) all relevance;
    a product of two operands that both carry signal (QK^T, linear attention) takes AttnLRP's
    uniform rule. Both are conservative, so the conservation guard stays meaningful.
    """

    eps: float = 1e-9

    def apply(self, handler: OpHandler, op: Op) -> Any:
        gates = handler.gate_operands(op)
        if gates and len(gates) < len(op.signals):
            op = op.holding_constant(gates)
        return ProductRule(eps=self.eps).apply(handler, op)

    def relevances(self, node: OpNode, R: Tensor) -> tuple[Tensor | None, ...]:
        raise AssertionError("GatedProduct makes ProductRule nodes")


@dataclass(frozen=True)
class LayerNormRule(OpRule):
    """LayerNorm, normaliser held constant, epsilon rule on ``(x - mean) / std * w + b``."""

    eps: float = 1e-6

    def apply(self, handler: OpHandler, op: Op) -> Any:
        if len(op.signals) != 1 or op.keys[0] not in ((0,), ("kw", "input")):
            handler.refuse(op, "its weight or bias depends on the input")
        return handler.node(op, self, layer=False)

    def relevances(self, node: OpNode, R: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = node._intact_signals()
        b = _bound(node.call, _LN_ARGS)
        dims = tuple(range(-len(tuple(b["normalized_shape"])), 0))
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            centred = leaf - leaf.mean(dims, keepdim=True)
            std = (centred.detach().pow(2).mean(dims, keepdim=True) + b.get("eps", 1e-5)).sqrt()
            y = centred / std
            if b.get("weight") is not None:
                y = y * b["weight"]
            if b.get("bias") is not None:
                y = y + b["bias"]
            s = R / stabilize(y.detach(), self.eps)
            (g,) = torch.autograd.grad(y, leaf, s)
        return (x * g,)


@dataclass(frozen=True)
class AffineSum(OpRule):
    """``a + b``: z rule; with one input-dependent operand the constant absorbs its share."""

    eps: float = 1e-6

    def apply(self, handler: OpHandler, op: Op) -> Any:
        return handler.node(op, Norm(eps=self.eps), layer=len(op.signals) == 2)

    def relevances(self, node: OpNode, R: Tensor) -> tuple[Tensor | None, ...]:
        raise AssertionError("AffineSum makes Norm nodes")


@dataclass(frozen=True)
class Decompose(OpRule):
    """Run a fused attention call as its steps, each under its own rule (see module docs)."""

    def apply(self, handler: OpHandler, op: Op) -> Any:
        impls: dict[str, Callable[..., Any]] = {
            "multi_head_attention_forward": _mha,
            "scaled_dot_product_attention": _sdpa,
        }
        impl = impls.get(op.name)
        if impl is None:
            return handler.refuse(op, "Decompose() knows only fused attention calls")
        with handler.rec.mode():
            return impl(*op.args, **op.kwargs)

    def relevances(self, node: OpNode, R: Tensor) -> tuple[Tensor | None, ...]:
        raise AssertionError("Decompose makes no node")


def _additive_mask(mask: Tensor | None, like: Tensor) -> Tensor | None:
    if mask is None or mask.is_floating_point():
        return mask
    return torch.zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill(
        ~mask, float("-inf")
    )


def _attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """``softmax(q k^T * scale + mask) v`` as separate ops, ``q`` (..., L, E)."""
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores + mask
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def _projections(
    inputs: tuple[Tensor, ...], weights: tuple[Any, ...], bias: Tensor | None
) -> list[Tensor]:
    biases: tuple[Tensor | None, ...] = (None,) * 3 if bias is None else bias.chunk(3)
    return [F.linear(t, w, b) for t, w, b in zip(inputs, weights, biases, strict=True)]


def _sdpa(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    if dropout_p or enable_gqa:
        raise UnsupportedLayerError(
            "scaled_dot_product_attention with dropout_p > 0 or enable_gqa has no rule; call "
            "the model in eval mode (the engine does) without grouped-query attention."
        )
    L, S = query.shape[-2], key.shape[-2]
    mask = _additive_mask(attn_mask, query)
    if is_causal:
        causal = torch.ones(L, S, dtype=torch.bool, device=query.device).tril()
        mask = _additive_mask(causal, query)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    return _attend(query, key, value, mask, scale)


def _mha(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    embed_dim_to_check: int,
    num_heads: int,
    in_proj_weight: Tensor | None,
    in_proj_bias: Tensor | None,
    bias_k: Tensor | None,
    bias_v: Tensor | None,
    add_zero_attn: bool,
    dropout_p: float,
    out_proj_weight: Tensor,
    out_proj_bias: Tensor | None,
    training: bool = True,
    key_padding_mask: Tensor | None = None,
    need_weights: bool = True,
    attn_mask: Tensor | None = None,
    use_separate_proj_weight: bool = False,
    q_proj_weight: Tensor | None = None,
    k_proj_weight: Tensor | None = None,
    v_proj_weight: Tensor | None = None,
    static_k: Tensor | None = None,
    static_v: Tensor | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """``F.multi_head_attention_forward`` for the common case, batch first inside."""
    if bias_k is not None or bias_v is not None or add_zero_attn or static_k is not None:
        raise UnsupportedLayerError(
            "nn.MultiheadAttention with add_bias_kv, add_zero_attn or static keys has no "
            "relevance rule here; build it without them."
        )
    if static_v is not None or key_padding_mask is not None or is_causal:
        raise UnsupportedLayerError(
            "nn.MultiheadAttention with key_padding_mask, static values or is_causal has no "
            "relevance rule here; pass an additive attn_mask instead."
        )
    if training and dropout_p:
        raise UnsupportedLayerError("attention dropout in training mode has no rule.")
    unbatched = query.dim() == 2
    if unbatched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
    same = query is key and key is value
    query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    n, length, embed = query.shape
    heads, head_dim = num_heads, embed // num_heads
    if not use_separate_proj_weight:
        assert in_proj_weight is not None
        if same:
            q, k, v = F.linear(query, in_proj_weight, in_proj_bias).chunk(3, dim=-1)
        else:
            q, k, v = _projections((query, key, value), in_proj_weight.chunk(3), in_proj_bias)
    else:
        ws = (q_proj_weight, k_proj_weight, v_proj_weight)
        q, k, v = _projections((query, key, value), ws, in_proj_bias)

    def split(t: Tensor) -> Tensor:
        return t.reshape(n, t.shape[1], heads, head_dim).transpose(1, 2)

    mask = _additive_mask(attn_mask, query)
    if mask is not None and mask.dim() == 3:
        mask = mask.reshape(n, heads, *mask.shape[1:])
    out = _attend(split(q), split(k), split(v), mask, 1.0 / math.sqrt(head_dim))
    out = F.linear(out.transpose(1, 2).reshape(n, length, embed), out_proj_weight, out_proj_bias)
    out = out.transpose(0, 1)
    weights = None
    if need_weights:  # returned as constants: relevance does not flow through them
        scores = torch.matmul(split(q.detach()), split(k.detach()).transpose(-2, -1))
        scores = scores / math.sqrt(head_dim)
        weights = torch.softmax(scores if mask is None else scores + mask, dim=-1)
        weights = weights.mean(1) if average_attn_weights else weights
        weights = weights.squeeze(0) if unbatched else weights
    return (out.squeeze(1) if unbatched else out), weights
