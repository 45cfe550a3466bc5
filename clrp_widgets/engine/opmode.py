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

from .canonizers import merge_batchnorm
from .errors import UnsupportedLayerError
from .hooks import ForwardRecorder, Node, _RelevanceFn
from .opnodes import Alias, Call, OpFn, OpNode
from .ops import LinearOp
from .optable import KINDS, LINEAR_CLASSES, MAX_POOL_OPS, is_inplace, op_name
from .rules import Gate, Gradient, LinearRule, Norm, OpRule, Pass, Rule

_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_ATTENTION_OPS = frozenset(
    {"matmul", "bmm", "einsum", "multi_head_attention_forward", "scaled_dot_product_attention"}
)
_BN_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")


class _Op:
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
    """Called by the recorder's TorchFunctionMode for every torch call of the forward pass."""

    def __init__(self, rec: ForwardRecorder) -> None:
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
        path = rec.stack[-1] if rec.stack else ""
        count = self.counts.get((path, name), 0)
        self.counts[(path, name)] = count + 1
        node_name = f"{path}:{name}" + (f".{count}" if count else "")
        rec.op_names.append(node_name)
        op = _Op(func, args, kwargs, signals, name, node_name, path)
        if op.inplace and args and isinstance(args[0], Tensor):
            rec.protect(args[0])
        rs = rec.ruleset
        rule = rs.by_name.get(node_name) or rs.by_op.get(name)
        kind = KINDS.get(name)
        if rule is not None and not (kind == "linear" and isinstance(rule, LinearRule)):
            return self._ruled(op, rule)
        return self._default(op, kind)

    # ---------------------------------------------------------------- dispatch
    def _ruled(self, op: _Op, rule: Rule) -> Any:
        if isinstance(rule, OpRule):
            return rule.apply(self, op)
        if isinstance(rule, Gradient):
            return self._route(op)
        if isinstance(rule, Pass):
            if len(op.signals) != 1:
                self._refuse(op, "Pass() needs exactly one input-dependent operand")
            return self._pass(op)
        if isinstance(rule, Gate):
            if len(op.signals) != 2 or rule.gate not in (0, 1):
                self._refuse(op, "Gate(gate=i) needs two input-dependent operands, i in (0, 1)")
            return self._node(op, rule, layer=True)
        if isinstance(rule, Norm):
            return self._node(op, rule, layer=True)
        return self._refuse(
            op, f"rule {type(rule).__name__} applies to Conv/Linear operations only"
        )

    def _default(self, op: _Op, kind: str | None) -> Any:
        n = len(op.signals)
        if kind == "route":
            return self._route(op)
        if kind == "const":
            return op.func(*op.args, **op.kwargs)
        if kind in ("pass", "gate"):
            if n != 1:
                self._refuse(op, f"{n} input-dependent operands")
            return self._pass(op, gate=kind == "gate")
        if kind == "norm":
            if n != 1 or op.keys[0] not in ((0,), ("kw", "input")):
                self._refuse(op, "its weight or statistics depend on the input")
            return self._norm(op)
        if kind == "add":
            if n == 1:
                return self._pass(op)
            return self._node(op, Norm(eps=self.rec.ruleset.sum_eps), layer=True)
        if kind == "mul":
            return self._pass(op) if n == 1 else self._node(op, self._gate(op), layer=True)
        if kind == "div":
            if op.keys[0] != (0,):
                self._refuse(op, "a division by an input-dependent tensor")
            return self._pass(op) if n == 1 else self._node(op, Gate(gate=1), layer=True)
        if kind == "zrule":
            return self._node(op, self._zrule(op), layer=True)
        if kind == "linear":
            return self._linear(op)
        out = op.func(*op.args, **op.kwargs)
        if not _has_float(out):
            return out  # comparisons, argmax, shape queries: no relevance flows there
        return self._refuse(op, "no rule is known for it")

    # ---------------------------------------------------------------- kinds
    def _route(self, op: _Op) -> Any:
        rec = self.rec
        out = op.func(*op.args, **op.kwargs)
        gate = all(getattr(rec.info.get(t), "gate", False) for t in op.signals)
        if op.inplace and op.args and isinstance(op.args[0], Tensor):
            rec.tag(op.args[0], None, gate)
        if op.name in MAX_POOL_OPS and isinstance(out, Tensor):
            call = Call(op.func, op.detached()[0], op.detached()[1], op.keys, op.inplace)
            node = OpNode(op.node_name, Gradient(), call, [], out.detach(), rec.ledger, True)
            rec.add_layer(op.node_name, out, node)
            out = Alias.apply(out)
        rec.tag(out, None, gate)
        return out

    def _pass(self, op: _Op, gate: bool = False) -> Any:
        target = op.args[0] if op.args else None
        if op.inplace and target is op.signals[0]:
            # in place on a graph-free alias: the data changes, the graph keeps the identity
            args, kwargs = op.detached()
            op.func(*args, **kwargs)
            if gate:
                self.rec.tag(target, None, True)
            return target
        return self._node(op, Pass(), layer=False, gate=gate)

    def _node(self, op: _Op, rule: Rule, layer: bool, gate: bool = False) -> Any:
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
            return self._refuse(op, "it does not return one tensor")
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
        rec.tag(result, node, gate)
        if layer:
            rec.add_layer(op.node_name, handle, node)
        return result

    def _gate(self, op: _Op) -> Gate:
        info = self.rec.info
        gates = [i for i, t in enumerate(op.signals) if getattr(info.get(t), "gate", False)]
        if len(gates) != 1:
            size = torch.broadcast_shapes(*(t.shape for t in op.signals)).numel()
            gates = [i for i, t in enumerate(op.signals) if t.numel() < size]
        if len(gates) != 1:
            self._refuse(
                op,
                "a product of two input-dependent tensors where neither operand is recognisably "
                "a gate (made by sigmoid/hardsigmoid/softmax, or broadcast)",
            )
        return Gate(gate=gates[0])

    def _zrule(self, op: _Op) -> Rule:
        rs = self.rec.ruleset
        if "pool" in op.name:
            rule = rs.rule_for_type(nn.AvgPool2d)
            if isinstance(rule, Norm):
                return rule
        return Norm(eps=rs.sum_eps)

    def _norm(self, op: _Op) -> Any:
        rec = self.rec
        if op.name != "batch_norm" or not rec.merge_bn:
            return self._pass(op)
        bound = dict(zip(_BN_ARGS, op.args, strict=False))
        bound.update(op.kwargs)
        info = rec.info.get(op.signals[0])
        producer = None if info is None else info.producer
        mean, var = bound.get("running_mean"), bound.get("running_var")
        if (
            bound.get("training", False)
            or not isinstance(producer, Node)
            or producer.bn is not None
            or not isinstance(producer.rule, LinearRule)
            or not isinstance(mean, Tensor)
            or op.inplace
        ):
            return self._pass(op)
        bn = SimpleNamespace(
            running_mean=mean,
            running_var=var,
            weight=bound.get("weight"),
            bias=bound.get("bias"),
            eps=bound.get("eps", 1e-5),
        )
        merged = merge_batchnorm(*producer.layer_weights(), bn)
        if merged is None:
            return self._pass(op)
        result = self._pass(op)
        producer.bn = bn  # type: ignore[assignment]
        producer.weight, producer.bias = merged
        producer.merged_out = result.detach()
        producer.versions[False] = result._version
        return result

    def _linear(self, op: _Op) -> Any:
        rec = self.rec
        bound = dict(zip(_CONV_ARGS, op.args, strict=False))
        bound.update(op.kwargs)
        weight, bias = bound.get("weight"), bound.get("bias")
        if op.keys not in ([(0,)], [("kw", "input")]) or not isinstance(weight, Tensor):
            return self._refuse(op, "its weight or bias depends on the input")
        is_first = not rec.first_seen
        rec.first_seen = True
        rs = rec.ruleset
        rule = rs.by_name.get(op.node_name) or rs.by_op.get(op.name)
        owner = rec.params.get(id(weight))
        if rule is None and owner is not None:
            module = rec.model.get_submodule(owner[0])
            rule = rs.rule_for(owner[0], module, is_first)
        if rule is None:
            rule = rs.rule_for_type(LINEAR_CLASSES[op.name], is_first)
        if isinstance(rule, (Pass, Gradient, Norm, Gate, OpRule)):
            return self._ruled(op, rule)
        if not isinstance(rule, LinearRule):
            return self._refuse(op, "no Conv/Linear rule in the preset")
        out = op.run_detached()
        inp = op.signals[0]
        node = Node(op.node_name, None, rule, inp, out.detach())
        node.ledger = rec.ledger
        rec.keep(node, node.a)
        node.op = LinearOp.from_call(op.name, weight, bound, op.node_name)
        node.weight = weight.detach()
        node.bias = None if bias is None else bias.detach()
        node.weight_key = (weight.data_ptr(), weight._version)
        handle = _RelevanceFn.apply(inp, node)
        rec.nodes.append(node)
        rec.add_layer(op.node_name, handle, node)
        result = Alias.apply(handle)
        rec.tag(result, node)
        return result

    # ---------------------------------------------------------------- errors
    def _refuse(self, op: _Op, why: str) -> Any:
        where = f"module {op.path!r}" if op.path else "the model's own forward"
        for owner in (torch, torch.nn.functional, torch.Tensor):
            if hasattr(owner, op.name):
                key = f"{owner.__name__ if owner is not torch.Tensor else 'torch.Tensor'}.{op.name}"
                break
        else:
            key = None
        every = f", or overrides={{{key}: Pass()}} for every call of it" if key else ""
        if op.name in _ATTENTION_OPS:
            every += (
                "; for attention (transformers) use rules='attnlrp' or rules='cp_lrp', which "
                "have rules for matmul, softmax, LayerNorm and fused attention"
            )
        raise UnsupportedLayerError(
            f"no relevance rule for operation {op.name!r} ({why}), called in {where}; its node is "
            f"{op.node_name!r}. If relevance passes through it unchanged (an element-wise op), "
            f"extend the preset: RelevanceEngine(model, rules=..., overrides={{{op.node_name!r}: "
            f"Pass()}}) (the same overrides= works in cw.Explainer, cw.lrp and cw.clrp){every}. "
            "Norm() gives a linear op the z rule, Gate(gate=i) a product whose operand i is a gate "
            "(rules from clrp_widgets.engine.rules). Or rewrite the operation."
        )


def _has_float(value: Any) -> bool:
    if isinstance(value, Tensor):
        return value.is_floating_point()
    if isinstance(value, (tuple, list)):
        return any(_has_float(v) for v in value)
    return False
