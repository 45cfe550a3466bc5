"""Forward-pass recording: every hooked module call becomes a :class:`Node` in the autograd graph.

Each module with a relevance rule gets its output replaced by ``_RelevanceFn(input)``, whose
backward is the rule instead of the gradient. Modules with the :class:`Gradient` rule keep their
plain gradient (max-pool winner-takes-all, dropout, flatten). The hooks exist only during the
forward pass (:class:`ForwardRecorder` is a context manager with ``try/finally``); the backward
passes run on the recorded graph alone, so the model never carries hooks between calls.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .canonizers import merge_batchnorm
from .errors import UnsupportedLayerError
from .ops import LINEAR_TYPES, LinearOp
from .presets import BATCH_NORMS, RuleSet
from .rules import Gradient, LinearRule, Norm, Pass, Rule


class Node:
    """One call of a module that has a relevance rule."""

    def __init__(self, name: str, module: nn.Module, rule: Rule, inp: Tensor, out: Tensor) -> None:
        self.name = name
        self.module = module
        self.rule = rule
        self.inp = inp  # the module input, in the autograd graph
        self.a = inp.detach()
        self.out = out  # the module output, detached (returned into the graph by _RelevanceFn)
        self.bn: nn.Module | None = None  # BatchNorm merged into this layer
        self.merged_out: Tensor | None = None  # output of the merged BatchNorm
        self.versions = {True: out._version, False: 0}  # version counters at recording
        self.op: LinearOp | None = None
        self.weight: Tensor | None = None
        self.bias: Tensor | None = None
        self.prepared: dict[str, Any] = {}
        self.state: dict[str, Any] = {}  # the rule's per-input denominators, made on first use
        self.keep_state = True  # keep them for later backward passes over this forward pass

    def output(self) -> Tensor:
        """Output of the (possibly BatchNorm-merged) layer, recomputed if overwritten in place.

        An in-place activation (``ReLU(inplace=True)``) after this layer runs in place, as in the
        plain model, to save memory; the layer's own output is then recomputed when asked for.
        """
        out = self.out if self.merged_out is None else self.merged_out
        if out._version == self.versions[out is self.out]:
            return out
        if self.op is None or self.weight is None:
            return self.module.forward(self.a).detach()
        return self.op.forward(self.a, self.weight, self.bias)

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
            return rule.relevance(self.module, self.a, self.output(), R)
        assert isinstance(rule, LinearRule) and self.op is not None
        state = self.state or rule.state(self.op, self.a, self.pristine_output(), self.prepared)
        if self.keep_state:
            self.state = state
        return rule.relevance(self.op, self.a, state, self.prepared, R)


class _RelevanceFn(torch.autograd.Function):
    """Identity in the forward pass (returns the node's output); the node's rule backward."""

    @staticmethod
    def forward(ctx, inp: Tensor, node: Node) -> Tensor:
        ctx.node = node
        return node.out.detach()  # a fresh alias: node.out itself stays out of the graph

    @staticmethod
    def backward(ctx, R: Tensor) -> tuple[Tensor, None]:
        return ctx.node.relevance(R), None


class ForwardRecorder:
    """Context manager that hooks the model's leaf modules for one forward pass.

    After the pass, :attr:`nodes` lists the rule nodes in call order, :attr:`outputs` maps module
    names to their output tensors in the graph (the last call wins) and :attr:`order` lists the
    module names in call order.
    """

    def __init__(
        self,
        modules: dict[str, nn.Module],
        ruleset: RuleSet,
        merge_bn: bool,
    ) -> None:
        self.modules = modules
        self.ruleset = ruleset
        self.merge_bn = merge_bn
        self.nodes: list[Node] = []
        self.outputs: dict[str, Tensor] = {}
        self.order: list[str] = []
        self._inputs: dict[str, list[Tensor]] = {}
        self._producer: dict[int, Node] = {}
        self._handles: list[Any] = []
        self._first_seen = False

    def __enter__(self) -> ForwardRecorder:
        try:
            for name, module in self.modules.items():
                self._handles.append(module.register_forward_pre_hook(self._pre_hook(name)))
                self._handles.append(module.register_forward_hook(self._post_hook(name)))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._producer.clear()

    def _pre_hook(self, name: str):
        def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            if len(args) != 1 or not isinstance(args[0], Tensor):
                raise UnsupportedLayerError(
                    f"module {name!r} ({type(module).__name__}) was called with "
                    f"{len(args)} positional inputs; relevance rules need exactly one tensor. "
                    "Wrap the call so the module takes one tensor."
                )
            self._inputs.setdefault(name, []).append(args[0])
            if not getattr(module, "inplace", False):
                return None
            if isinstance(self.ruleset.rule_for(name, module), Pass):
                # runs in place on a graph-free alias: the data changes as in the plain model, the
                # relevance graph does not (no masking by the activation's own backward)
                return (args[0].detach(),)
            return (args[0].clone(),)

        return hook

    def _post_hook(self, name: str):
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Tensor:
            inp = self._inputs[name].pop()
            if not isinstance(output, Tensor):
                raise UnsupportedLayerError(
                    f"module {name!r} ({type(module).__name__}) returned "
                    f"{type(output).__name__}, not a tensor; map it to a supported layer."
                )
            self.order.append(name)
            is_first = isinstance(module, LINEAR_TYPES) and not self._first_seen
            if isinstance(module, LINEAR_TYPES):
                self._first_seen = True
            rule = self.ruleset.rule_for(name, module, is_first)
            if rule is None:
                raise UnsupportedLayerError(no_rule_message(name, module))
            if isinstance(rule, Gradient):
                self.outputs[name] = output
                return output
            if isinstance(module, BATCH_NORMS) and self.merge_bn:
                rule = self._try_merge(module, inp, output, rule)
            if isinstance(rule, LinearRule) and not isinstance(module, LINEAR_TYPES):
                raise UnsupportedLayerError(
                    f"rule {type(rule).__name__} needs a Conv/Linear layer, but module {name!r} "
                    f"is {type(module).__name__}; map it to Pass(), Norm() or Gradient()."
                )
            node = Node(name, module, rule, inp, output.detach())
            wrapped = _RelevanceFn.apply(inp, node)
            self.nodes.append(node)
            self._producer[id(wrapped)] = node
            self.outputs[name] = wrapped
            return wrapped

        return hook

    def _try_merge(self, bn: nn.Module, inp: Tensor, output: Tensor, rule: Rule) -> Rule:
        producer = self._producer.get(id(inp))
        if producer is None or producer.bn is not None:
            return rule
        if not isinstance(producer.module, LINEAR_TYPES):
            return rule
        weight, bias = producer.module.weight, producer.module.bias
        merged = merge_batchnorm(weight, bias, bn)
        if merged is None:
            return rule
        producer.bn = bn
        producer.weight, producer.bias = merged
        producer.merged_out = output.detach()
        producer.versions[False] = output._version
        return Pass()


def no_rule_message(name: str, module: nn.Module) -> str:
    kind = type(module).__name__
    return (
        f"no relevance rule for module {name!r} ({kind}). Map a rule to it, e.g. "
        f"rules={{{name!r}: Pass()}} for an element-wise layer or {{torch.nn.{kind}: Epsilon()}} "
        "for a linear one (rules from clrp_widgets.engine.rules), or replace the layer."
    )
