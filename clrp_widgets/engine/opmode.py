"""Op-level rules: what the recorder does with each tensor operation outside rule modules.

Only calls that take an input-dependent tensor (a *signal*: the input, and everything computed
from it) are looked at; the rest (parameters, constants, shape queries) run untouched. The rule
comes from, in order: ``overrides`` keyed by the op node's name (``"layer1.0:add"``), by the torch
function (``torch.erf``), then the default of the op's kind (:mod:`.optable`). An operation with a
floating-point result and no rule raises :class:`~.errors.UnsupportedLayerError`.

Gate identification (``a * b`` with both operands input-dependent): the gate is the operand made
by sigmoid, hard-sigmoid or softmax (functional, or ``nn.Sigmoid``/``nn.Hardsigmoid``/``nn.Softmax``
modules), possibly reshaped or expanded on the way; failing that, the operand that is broadcast
(fewer elements than the product, e.g. ``(N, C, 1, 1)``). Anything else is refused.

In-place operations work as in the model (code that ignores the return value sees the new data):
a pass-through op runs on a graph-free alias of its target, so the graph still holds the identity;
any other op is computed out of place into a rule node and copied into the target with autograd
(``target.copy_(result)``), so the target's history continues at the rule node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

from .advice import refusal
from .attention import ProductRule
from .bounds import through
from .graph import Absorb, Alias, Call, ConstantTokens, OpFn, OpNode
from .ops import LinearOp
from .optable import KINDS, LINEAR_CLASSES, MAX_POOL_OPS, SHAPE_ARGUMENT, is_inplace, op_name
from .recording import Recording
from .rules import Gate, Gradient, LinearRule, Norm, OpRule, Pass, Rule

_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_RESAMPLE_ARGS = ("input", "size", "scale_factor", "mode")
_CONCAT = frozenset({"cat", "concat", "concatenate"})
_BN_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")


class Op:
    """One intercepted call."""

    def __init__(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        signals: list[tuple[tuple[Any, ...], Tensor]],
        name: str,
        node_name: str,
        path: str,
    ) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.keys = [k for k, _ in signals]
        self.signals = [t for _, t in signals]
        self.name = name
        self.node_name = node_name
        self.path = path
        self.inplace = is_inplace(func, args, kwargs)

    def detached(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return _map(self.args, _detach), {k: _map(v, _detach) for k, v in self.kwargs.items()}

    def run_detached(self) -> Any:
        args, kwargs = self.detached()
        with torch.no_grad():
            return self.func(*args, **kwargs)

    def call(self) -> Call:
        """The op as a function of its signal operands (the others fixed, detached)."""
        args, kwargs = self.detached()
        return Call(self.func, args, kwargs, self.keys, self.inplace)

    def holding_constant(self, indices: list[int]) -> Op:
        """This op with the signal operands at ``indices`` held constant (no relevance)."""
        signals = [
            (k, t)
            for i, (k, t) in enumerate(zip(self.keys, self.signals, strict=True))
            if i not in indices
        ]
        return Op(self.func, self.args, self.kwargs, signals, self.name, self.node_name, self.path)


def _detach(value: Any) -> Any:
    return value.detach() if isinstance(value, Tensor) else value


def _map(value: Any, fn: Callable[[Any], Any]) -> Any:
    if isinstance(value, (tuple, list)):
        return (
            type(value)(fn(v) for v in value)
            if isinstance(value, list)
            else tuple(fn(v) for v in value)
        )
    return fn(value)


def _tensors(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Iterator[tuple[tuple[Any, ...], Tensor]]:
    for i, a in enumerate(args):
        if isinstance(a, Tensor):
            yield (i,), a
        elif isinstance(a, (tuple, list)):
            for j, b in enumerate(a):
                if isinstance(b, Tensor):
                    yield (i, j), b
    for k, v in kwargs.items():
        if isinstance(v, Tensor):
            yield ("kw", k), v


class OpHandler:
    """Called by the recorder's TorchFunctionMode for every torch call of the forward pass.

    Op rules (:class:`~.rules.OpRule`, e.g. :mod:`.attention`) get the handler and the call:
    they read the :attr:`rec` (a :class:`~.recording.Recording`) and build their node with
    :meth:`node`, or refuse with :meth:`refuse`; :meth:`gate_operands` tells which operands
    are gates.
    """

    def __init__(self, rec: Recording) -> None:
        self.rec = rec
        self.counts: dict[tuple[str, str], int] = {}

    def __call__(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        rec = self.rec
        if rec.paused or rec.rule_depth:
            return func(*args, **kwargs)
        signals = [(k, t) for k, t in _tensors(args, kwargs) if t in rec.info]
        if not signals:
            return func(*args, **kwargs)
        name = op_name(func)[0]
        if name in SHAPE_ARGUMENT:  # x.expand_as(y): y gives its shape only
            signals = [(k, t) for k, t in signals if k == (0,)]
            if not signals:
                return func(*args, **kwargs)
        path = rec.stack[-1] if rec.stack else ""
        count = self.counts.get((path, name), 0)
        self.counts[(path, name)] = count + 1
        node_name = f"{path}:{name}" + (f".{count}" if count else "")
        rec.op_names.append(node_name)
        op = Op(func, args, kwargs, signals, name, node_name, path)
        if op.inplace and args and isinstance(args[0], Tensor):
            rec.protect(args[0])
        rs = rec.ruleset
        rule = rs.by_name.get(node_name) or rs.by_op.get(name)
        kind = KINDS.get(name)
        if rule is not None and not (kind == "linear" and isinstance(rule, LinearRule)):
            return self._ruled(op, rule)
        return self._default(op, kind)

    def gate_operands(self, op: Op) -> list[int]:
        """Indices of the op's signal operands that were made by a gate (softmax, sigmoid)."""
        info = self.rec.info
        return [i for i, t in enumerate(op.signals) if getattr(info.get(t), "gate", False)]

    # ---------------------------------------------------------------- dispatch
    def _ruled(self, op: Op, rule: Rule) -> Any:
        if isinstance(rule, OpRule):
            return rule.apply(self, op)
        if isinstance(rule, Gradient):
            return self._route(op)
        if isinstance(rule, Pass):
            if len(op.signals) != 1:
                self.refuse(op, "Pass() needs exactly one input-dependent operand")
            return self._pass(op)
        if isinstance(rule, Gate):
            if len(op.signals) != 2 or rule.gate not in (0, 1):
                self.refuse(op, "Gate(gate=i) needs two input-dependent operands, i in (0, 1)")
            return self.node(op, rule, layer=True)
        if isinstance(rule, Norm):
            return self.node(op, rule, layer=True)
        return self.refuse(op, f"rule {type(rule).__name__} applies to Conv/Linear operations only")

    def _default(self, op: Op, kind: str | None) -> Any:
        n = len(op.signals)
        if kind == "route":
            return self._route(op)
        if kind == "const":
            return op.func(*op.args, **op.kwargs)
        if kind in ("pass", "gate"):
            if n != 1:
                self.refuse(op, f"{n} input-dependent operands")
            return self._pass(op, gate=kind == "gate")
        if kind == "norm":
            if n != 1 or op.keys[0] not in ((0,), ("kw", "input")):
                self.refuse(op, "its weight or statistics depend on the input")
            return self._norm(op)
        if kind == "stat":  # a normaliser: a constant for relevance (untagged)
            return op.func(*op.args, **op.kwargs)
        if kind == "add":
            if n == 1:
                return self._pass(op, bounds=self._bounds(op))
            return self.node(op, Norm(eps=self.rec.ruleset.sum_eps), layer=True)
        if kind == "mul":
            if n == 1:
                return self._pass(op, bounds=self._bounds(op))
            return self.node(op, self._product(op), layer=True)
        if kind == "div":
            if op.keys[0] != (0,):
                self.refuse(op, "a division by an input-dependent tensor")
            if n == 1:
                return self._pass(op, bounds=self._bounds(op))
            return self.node(op, Gate(gate=1), layer=True)
        if kind == "addcmul":
            return self._addcmul(op)
        if kind == "zrule":
            return self.node(op, self._zrule(op), layer=True)
        if kind == "resample":
            if _nearest(op):  # each output copies one input
                return self._route(op)
            return self.node(op, Norm(eps=self.rec.ruleset.sum_eps), layer=True)
        if kind == "linear":
            return self._linear(op)
        out = op.func(*op.args, **op.kwargs)
        if not _has_float(out):
            return out  # comparisons, argmax, shape queries: no relevance flows there
        return self.refuse(op, "no rule is known for it")

    # ---------------------------------------------------------------- kinds
    def _route(self, op: Op) -> Any:
        rec = self.rec
        bounds = None if op.inplace else self._bounds(op)
        out = op.func(*op.args, **op.kwargs)
        gate = all(getattr(rec.info.get(t), "gate", False) for t in op.signals)
        if op.inplace and op.args and isinstance(op.args[0], Tensor):
            rec.tag(op.args[0], None, gate)
        if op.name in MAX_POOL_OPS and isinstance(out, Tensor):
            node = OpNode(op.node_name, Gradient(), op.call(), [], out.detach(), rec.ledger, True)
            rec.add_layer(op.node_name, out, node)
            out = Alias.apply(out)
        if op.name in _CONCAT and isinstance(out, Tensor):
            out = self._constant_tokens(op, out)
        rec.tag(out, None, gate, bounds)
        return out

    def _constant_tokens(self, op: Op, out: Tensor) -> Tensor:
        """``cat`` of a signal with constant tensors (a class token): mark the constant slots,
        whose relevance stays there (:class:`~.graph.Absorb`)."""
        parts = op.args[0] if op.args else None
        if not isinstance(parts, (list, tuple)) or not out.is_floating_point():
            return out
        signal = {key[1] for key in op.keys if key[0] == 0 and len(key) == 2}
        if len(signal) == len(parts):
            return out
        dim = op.args[1] if len(op.args) > 1 else op.kwargs.get("dim", 0)
        mask = torch.cat(
            [torch.full(t.shape, i in signal, device=out.device) for i, t in enumerate(parts)],
            dim=dim,
        )
        rec = self.rec
        rec.absorbing[op.node_name] = ~mask
        handle = Absorb.apply(ConstantTokens(op.node_name, mask, rec.ledger), out)
        rec.add_layer(op.node_name, handle, out)  # the token sequence, class token included
        return Alias.apply(handle)

    def _bounds(self, op: Op) -> tuple[Tensor, Tensor] | None:
        """z^B bounds of the op's result, before the first layer (:mod:`.bounds`): for ops
        that move values or are element-wise affine with constants, when every signal has
        bounds."""
        rec = self.rec
        if rec.first_seen or op.inplace:
            return None
        known = [rec.bounds_of(t) for t in op.signals]
        if any(b is None for b in known):
            return None
        call = op.call()
        lows, highs = [b[0] for b in known], [b[1] for b in known]  # type: ignore[index]
        return through(call, lows, highs)

    def _pass(self, op: Op, gate: bool = False, bounds: tuple[Tensor, Tensor] | None = None) -> Any:
        target = op.args[0] if op.args else None
        if op.inplace and target is op.signals[0]:
            # in place on a graph-free alias: the data changes, the graph keeps the identity
            args, kwargs = op.detached()
            op.func(*args, **kwargs)
            if gate:
                self.rec.tag(target, None, True)
            return target
        return self.node(op, Pass(), layer=False, gate=gate, bounds=bounds)

    def node(
        self,
        op: Op,
        rule: Rule,
        layer: bool,
        gate: bool = False,
        bounds: tuple[Tensor, Tensor] | None = None,
    ) -> Any:
        rec = self.rec
        args, kwargs = op.detached()
        call = Call(op.func, args, kwargs, op.keys, op.inplace)
        values = [t.detach() for t in op.signals]
        if op.inplace:  # the target is overwritten below: keep its value
            values = [
                v.clone() if t is op.args[0] else v for v, t in zip(values, op.signals, strict=True)
            ]
        with torch.no_grad():
            out = call(*values)
        if not isinstance(out, Tensor):
            return self.refuse(op, "it does not return one tensor")
        node = OpNode(op.node_name, rule, call, values, out.detach(), rec.ledger, layer)
        if isinstance(rule, (Norm, OpRule)):
            for value in values:
                rec.keep(node, value)
        handle = OpFn.apply(node, *op.signals)
        if op.inplace:
            result = op.args[0]
            with torch.enable_grad():
                result.copy_(handle)
        else:
            result = Alias.apply(handle) if layer else handle
        rec.tag(result, node, gate, bounds)
        if layer:
            rec.add_layer(op.node_name, handle, node)
        return result

    def _product(self, op: Op) -> Rule:
        """The rule of ``a * b`` with two input-dependent operands.

        A gate (made by sigmoid, hard-sigmoid or softmax, or the one operand broadcast over the
        other: squeeze-excitation) is held constant and the other operand gets all relevance.
        Two operands that both carry signal (``silu(x1) * x2`` in SwiGLU, StarNet's star, a
        gMLP's spatial gating) share it by AttnLRP's uniform rule (each half of its epsilon
        share, conservative for a product: :class:`~.attention.ProductRule`).
        """
        gates = self.gate_operands(op)
        if len(gates) != 1:
            size = torch.broadcast_shapes(*(t.shape for t in op.signals)).numel()
            gates = [i for i, t in enumerate(op.signals) if t.numel() < size]
        if len(gates) == 1:
            return Gate(gate=gates[0])
        return ProductRule(eps=self.rec.ruleset.sum_eps)

    def _addcmul(self, op: Op) -> Any:
        """``input + value * t1 * t2``: pass with one signal; the z rule when it is linear in
        its signals jointly (``input`` and one factor)."""
        if len(op.signals) == 1:
            return self._pass(op)
        if len(op.signals) == 2 and (0,) in op.keys:
            return self.node(op, Norm(eps=self.rec.ruleset.sum_eps), layer=True)
        return self.refuse(op, "a product of two input-dependent factors")

    def _zrule(self, op: Op) -> Rule:
        rs = self.rec.ruleset
        if "pool" in op.name:
            rule = rs.rule_for_type(nn.AvgPool2d)
            if isinstance(rule, Norm):
                return rule
        return Norm(eps=rs.sum_eps)

    def _norm(self, op: Op) -> Any:
        rec = self.rec
        if op.name != "batch_norm" or not rec.merge_bn:
            return self._pass(op)
        bound = dict(zip(_BN_ARGS, op.args, strict=False))
        bound.update(op.kwargs)
        mean, var = bound.get("running_mean"), bound.get("running_var")
        if bound.get("training", False) or not isinstance(mean, Tensor) or op.inplace:
            return self._pass(op)
        bn = SimpleNamespace(
            running_mean=mean,
            running_var=var,
            weight=bound.get("weight"),
            bias=bound.get("bias"),
            eps=bound.get("eps", 1e-5),
        )
        result = self._pass(op)
        rec.merge_batchnorm_into(op.signals[0], bn, result)
        return result

    def _linear(self, op: Op) -> Any:
        rec = self.rec
        bound = dict(zip(_CONV_ARGS, op.args, strict=False))
        bound.update(op.kwargs)
        weight, bias = bound.get("weight"), bound.get("bias")
        if op.keys not in ([(0,)], [("kw", "input")]) or not isinstance(weight, Tensor):
            return self.refuse(op, "its weight or bias depends on the input")
        inp = op.signals[0]
        name, module = op.node_name, rec.op_level.get(op.path)
        if module is not None and name == f"{op.path}:{op.name}":
            name = op.path  # a Conv/Linear module's own call: the layer keeps the module name
        else:
            module = None
        rec.check_first(name, (weight, int(bound.get("groups", 1))), inp)
        is_first = not rec.first_seen
        rec.first_seen = True
        rule = self._linear_rule(op, name, module, weight, is_first)
        if isinstance(rule, (Pass, Gradient, Norm, Gate, OpRule)):
            return self._ruled(op, rule)
        if not isinstance(rule, LinearRule):
            return self.refuse(op, "no Conv/Linear rule in the preset")
        call = (LinearOp.from_call(op.name, weight, bound, name), weight, bias)
        node, handle = rec.linear_node(name, None, rule, inp, op.run_detached(), is_first, call)
        rec.add_layer(name, handle, node)
        result = Alias.apply(handle)
        rec.tag(result, node)
        return result

    def _linear_rule(
        self, op: Op, name: str, module: nn.Module | None, weight: Tensor, is_first: bool
    ) -> Rule | None:
        """The rule of a functional Conv/Linear call: by node name, op, calling module (a
        Conv/Linear module with its own forward), the weight's owner, then the op's type."""
        rs = self.rec.ruleset
        rule = rs.by_name.get(op.node_name) or rs.by_op.get(op.name)
        if rule is None and module is not None:
            rule = rs.rule_for(name, module, is_first)
        owner = None if rule is not None else self.rec.params.get(id(weight))
        if owner is not None:
            rule = rs.rule_for(owner[0], self.rec.model.get_submodule(owner[0]), is_first)
        if rule is None:
            rule = rs.rule_for_type(LINEAR_CLASSES[op.name], is_first)
        return rule

    # ---------------------------------------------------------------- errors
    def refuse(self, op: Op, why: str) -> Any:
        """Raise an :class:`UnsupportedLayerError` whose advice runs (:mod:`.advice`); kept
        on the recorder too, since torch turns a TypeError inside ``a * b`` into
        NotImplemented, and Python then tries the reflected or out-of-place operator: the first
        refusal is the one the user's code met."""
        err = refusal(op, why, self.rec.ruleset)
        self.rec.stash_refusal(err)
        raise err


def _nearest(op: Op) -> bool:
    """Whether an interpolate/upsample call copies values (the nearest modes)."""
    if op.name == "upsample_bilinear":
        return False
    mode = dict(zip(_RESAMPLE_ARGS, op.args, strict=False)).get("mode", "nearest")
    return str(op.kwargs.get("mode", mode)).startswith("nearest")


def _has_float(value: Any) -> bool:
    if isinstance(value, Tensor):
        return value.is_floating_point()
    if isinstance(value, (tuple, list)):
        return any(_has_float(v) for v in value)
    return False
