"""The relevance graph: rule nodes in the autograd graph, whose backward is a relevance rule.

A :class:`Node` is one call of a Conv/Linear layer (a module or a functional call) or of a
module with a rule, put into the graph by :class:`RelevanceFn`. An :class:`OpNode` is one call
of a tensor operation with an op-level rule; it holds what its rule needs (the input-dependent
operands, ``signals``) and is put into the graph by :class:`OpFn`, whose forward returns the
operation's result and whose backward gives the relevance of each signal operand:

- :class:`~.rules.Pass`: all relevance to the one signal (summed over broadcast dimensions);
- :class:`~.rules.Gate`: all relevance to the operand that is not the gate;
- :class:`~.rules.Norm`: the z rule ``R_i = a_i (df/da_i)^T (R / f(a))`` over every signal, for a
  parameter-free linear ``f`` (sums, differences, average pooling, ``mean``); for ``a + b`` this
  is the proportional split ``a / (a + b)``, ``b / (a + b)``.

:class:`Ledger` records, per node and backward pass, the relevance entering a node and the
relevance it hands down, for the conservation guard. :class:`Info` is what the recorder knows
of each input-dependent tensor. This module depends on the rules alone; the recorder
(:mod:`.recording`) builds the graph.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .rules import (
    SINGLE_USE,
    Gate,
    LinearRule,
    Norm,
    OpRule,
    Pass,
    Rule,
    ZBox,
    is_identity,
    stabilize,
)

if TYPE_CHECKING:
    from torch import nn

    from .ops import LinearOp


class Ledger:
    """Per-sample relevance sums entering and leaving each node during one backward pass.

    The relevance a node hands down often reaches the next node as the very same tensor (a
    convolution, an activation that passes relevance on, the next convolution): its sum is then
    taken once (the same object, not modified in place since).
    """

    def __init__(self) -> None:
        self.active = False
        self.records: list[tuple[str, Tensor, Tensor]] = []
        self._handed: tuple[weakref.ref[Tensor], int, Tensor] | None = None

    def start(self) -> None:
        """Begin a backward pass: no records, nothing handed down yet."""
        self.records, self._handed, self.active = [], None, True

    def record(self, name: str, R: Tensor, rels: tuple[Tensor | None, ...]) -> None:
        if not self.active or R.ndim == 0:
            return
        with torch.no_grad():
            n = R.shape[0]
            total_out = self._sum(R, n)
            signal = [r for r in rels if r is not None]
            if any(r.ndim == 0 or r.shape[0] != n for r in signal):
                return  # not per sample (e.g. a broadcast operand): no local check
            sums = [r.reshape(n, -1).sum(1) for r in signal]
            total_in = sums[0] if len(sums) == 1 else sum(sums, torch.zeros_like(total_out))
            if len(signal) == 1:
                self._handed = (weakref.ref(signal[0]), signal[0]._version, total_in)
        self.records.append((name, total_out, total_in))

    def _sum(self, R: Tensor, n: int) -> Tensor:
        handed = self._handed
        if handed is not None and handed[0]() is R and R._version == handed[1]:
            return handed[2]
        return R.reshape(n, -1).sum(1)


class Call:
    """An operation with its operands fixed except the signal ones: ``call(*signals)``."""

    def __init__(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        keys: list[tuple[Any, ...]],
        inplace: bool,
    ) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.keys = keys
        self.inplace = inplace

    def __call__(self, *signals: Tensor) -> Tensor:
        args = list(self.args)
        kwargs = dict(self.kwargs)
        for key, value in zip(self.keys, signals, strict=True):
            if key[0] == "kw":
                kwargs[key[1]] = value
            elif len(key) == 1:
                args[key[0]] = value
            else:
                seq = list(args[key[0]])
                seq[key[1]] = value
                args[key[0]] = type(args[key[0]])(seq) if isinstance(args[key[0]], tuple) else seq
        if self.inplace:  # work on a copy of the target: the model's tensors stay as they are
            args[0] = args[0].clone()
        return self.func(*args, **kwargs)


class OpNode:
    """One call of an operation with an op-level rule."""

    def __init__(
        self,
        name: str,
        rule: Rule,
        call: Call,
        signals: list[Tensor],
        out: Tensor,
        ledger: Ledger,
        layer: bool,
    ) -> None:
        self.name = name
        self.rule = rule
        self.call = call
        self.signals = signals  # detached operand values (copies where the op overwrote them)
        self.shapes = [s.shape for s in signals]
        self.versions = [s._version for s in signals]
        self.out = out  # detached result
        self.out_version = out._version
        self.ledger = ledger
        self.layer = layer
        self.state: dict[str, Any] = {}  # for the engine's denominator bookkeeping
        self.keep_state = True

    def relevances(self, R: Tensor) -> tuple[Tensor | None, ...]:
        """Relevance of each signal operand for relevance ``R`` at the output."""
        rule = self.rule
        if isinstance(rule, Pass):
            return (R.sum_to_size(self.shapes[0]),)
        if isinstance(rule, Gate):
            return tuple(
                None if i == rule.gate else R.sum_to_size(shape)
                for i, shape in enumerate(self.shapes)
            )
        if isinstance(rule, OpRule):
            rels = rule.relevances(self, R)
        else:
            assert isinstance(rule, Norm)
            rels = self._z_rule(rule, R)
        self.ledger.record(self.name, R, rels)
        return rels

    def _z_rule(self, rule: Norm, R: Tensor) -> tuple[Tensor | None, ...]:
        values = self._intact_signals()
        if rule.pass_identity and len(values) == 1 and is_identity(values[0], self.output()):
            return (R,)
        with torch.enable_grad():
            leaves = [v.detach().requires_grad_(True) for v in values]
            z = self.call(*leaves)
            s = R / stabilize(z.detach(), rule.eps)
            grads = torch.autograd.grad(z, leaves, s, allow_unused=True)
        return tuple(
            torch.zeros_like(v) if g is None else v * g for v, g in zip(values, grads, strict=True)
        )

    def _intact_signals(self) -> list[Tensor]:
        if any(s._version != v for s, v in zip(self.signals, self.versions, strict=True)):
            raise RuntimeError(
                f"an operand of {self.name!r} was overwritten in place after the call, so its "
                "relevance rule cannot be evaluated; write that operation out of place."
            )
        return self.signals

    def protect(self) -> None:
        """Copy the operands before the model overwrites one in place (the rule reads them)."""
        for i, (s, v) in enumerate(zip(self.signals, self.versions, strict=True)):
            if s._version == v:
                self.signals[i] = s.clone()
                self.versions[i] = self.signals[i]._version

    def output(self) -> Tensor:
        """The operation's result, recomputed if the model overwrote it in place later."""
        if self.out._version == self.out_version:
            return self.out
        with torch.no_grad():
            return self.call(*self._intact_signals()).detach()


class OpFn(torch.autograd.Function):
    """The op's result in the forward pass; the node's rule in the backward pass."""

    @staticmethod
    def forward(ctx: Any, node: OpNode, *signals: Tensor) -> Tensor:
        ctx.node = node
        return node.out.detach()

    @staticmethod
    def backward(ctx: Any, R: Tensor) -> tuple[Tensor | None, ...]:
        return (None, *ctx.node.relevances(R))


class ConstantTokens:
    """A concatenation of a signal with constants (a class token): where its slots are."""

    def __init__(self, name: str, mask: Tensor, ledger: Ledger) -> None:
        self.name = name
        self.mask = mask  # True where the result holds a signal entry
        self.ledger = ledger


class Absorb(torch.autograd.Function):
    """Identity; its backward records the relevance that the constant slots keep.

    Relevance at a constant token's slot (a class, distillation or register token) stays there,
    as a bias's share would: the gradient routing of ``cat`` drops it. The record lets the
    conservation guard account for it instead of reporting a leak.
    """

    @staticmethod
    def forward(ctx: Any, node: ConstantTokens, x: Tensor) -> Tensor:
        ctx.node = node
        return x.detach()

    @staticmethod
    def backward(ctx: Any, R: Tensor) -> tuple[None, Tensor]:
        node = ctx.node
        node.ledger.record(node.name, R, (R * node.mask,))
        return None, R


class Alias(torch.autograd.Function):
    """Identity with a separate output tensor: what the model receives from a layer.

    The layer's own output (where relevance is captured) stays out of the model's reach, so an
    in-place operation of the model on the alias (``out += identity``) cannot rebase it.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.detach()

    @staticmethod
    def backward(ctx: Any, R: Tensor) -> Tensor:
        return R


class Node:
    """One call of a module that has a relevance rule."""

    def __init__(
        self, name: str, module: nn.Module | None, rule: Rule, inp: Tensor, out: Tensor
    ) -> None:
        self.name = name
        self.module = module
        self.rule = rule
        self.inp = inp  # the module input, in the autograd graph
        self.a = inp.detach()
        self.a_version = inp._version
        self.out = out  # the module output, detached (returned into the graph by RelevanceFn)
        self.bn: nn.Module | None = None  # BatchNorm merged into this layer
        self.merged_out: Tensor | None = None  # output of the merged BatchNorm
        self.versions = {True: out._version, False: 0}  # version counters at recording
        self.op: LinearOp | None = None
        self.weight: Tensor | None = None
        self.bias: Tensor | None = None
        self.weight_key: tuple[Any, ...] | None = None  # op-level call: the weight's identity
        self.prepared: dict[str, Any] = {}
        self.state: dict[str, Any] = {}  # the rule's per-input denominators, made on first use
        self.keep_state = True  # keep them for later backward passes over this forward pass
        self.ledger: Any = None  # the recorder's Ledger (conservation guard)
        self.bounds: tuple[Tensor, Tensor] | None = None  # z^B bounds that came with the data

    def output(self) -> Tensor:
        """Output of the (possibly BatchNorm-merged) layer, recomputed if overwritten in place.

        An in-place activation (``ReLU(inplace=True)``) after this layer runs in place, as in the
        plain model, to save memory; the layer's own output is then recomputed when asked for.
        """
        out = self.out if self.merged_out is None else self.merged_out
        if out._version == self.versions[out is self.out]:
            return out
        if self.op is None or self.weight is None:
            assert self.module is not None
            return self.module.forward(self.a).detach()
        return self.op.forward(self.a, self.weight, self.bias)

    def protect(self) -> None:
        """Copy the input before the model overwrites it in place (the rule reads it later)."""
        if self.a._version == self.a_version:
            self.a = self.a.clone()
            self.a_version = self.a._version

    def layer_weights(self) -> tuple[Tensor, Tensor | None]:
        """The layer's own weight and bias (before any BatchNorm merge)."""
        if self.module is None:
            assert self.weight is not None
            return self.weight, self.bias
        bias = self.module.bias
        return self.module.weight, bias if isinstance(bias, Tensor) else None  # type: ignore[return-value]

    def pristine_output(self) -> Tensor | None:
        """The recorded output if it was not overwritten in place, else None."""
        out = self.out if self.merged_out is None else self.merged_out
        return out if out._version == self.versions[out is self.out] else None

    def relevance(self, R: Tensor) -> Tensor:
        """Relevance at the module input for relevance ``R`` at its output."""
        rule = self.rule
        if isinstance(rule, Pass):
            return R
        if isinstance(rule, Norm):
            assert self.module is not None
            return rule.relevance(self.module, self.a, self.output(), R)
        assert isinstance(rule, LinearRule) and self.op is not None
        state = self.state
        if not state:  # made for this pass; kept for later ones, or this pass's alone to reuse
            if self.bounds is not None and isinstance(rule, ZBox):
                state = rule.bounded_state(self.op, self.a, self.prepared, *self.bounds)
            else:
                state = rule.state(self.op, self.a, self.pristine_output(), self.prepared)
            if self.keep_state:
                self.state = state
            else:
                state[SINGLE_USE] = True
        return rule.relevance(self.op, self.a, state, self.prepared, R)


class RelevanceFn(torch.autograd.Function):
    """Identity in the forward pass (returns the node's output); the node's rule backward."""

    @staticmethod
    def forward(ctx, inp: Tensor, node: Node) -> Tensor:
        ctx.node = node
        return node.out.detach()  # a fresh alias: node.out itself stays out of the graph

    @staticmethod
    def backward(ctx, R: Tensor) -> tuple[Tensor, None]:
        node = ctx.node
        rel = node.relevance(R)
        if node.ledger is not None and not isinstance(node.rule, Pass):
            node.ledger.record(node.name, R, (rel,))
        return rel, None


class Info:
    """What the recorder knows of an input-dependent tensor of the forward pass."""

    __slots__ = ("bounds", "gate", "producer")

    def __init__(
        self, producer: Any = None, gate: bool = False, bounds: tuple[Tensor, Tensor] | None = None
    ) -> None:
        self.producer = producer  # the rule node whose output this tensor is
        self.gate = gate  # produced by a gating function (sigmoid, hard-sigmoid, softmax)
        self.bounds = bounds  # (low, high) of each entry, before the first layer (.bounds)
