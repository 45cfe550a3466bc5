"""Forward-pass recording: every hooked module call becomes a :class:`Node` in the autograd graph.

Each module with a relevance rule gets its output replaced by ``_RelevanceFn(input)``, whose
backward is the rule instead of the gradient. Modules with the :class:`Gradient` rule keep their
plain gradient (max-pool winner-takes-all, dropout, flatten). The hooks exist only during the
forward pass (:class:`ForwardRecorder` is a context manager with ``try/finally``); the backward
passes run on the recorded graph alone, so the model never carries hooks between calls.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

from .bounds import through, untraced_warning
from .canonizers import merge_batchnorm
from .errors import UnsupportedLayerError
from .hookids import reserve_hook_ids
from .opnodes import Alias
from .ops import LINEAR_TYPES, LinearOp
from .optable import GATE_MODULES
from .presets import BATCH_NORMS, MAX_POOLS, SHAPE_ONLY, RuleSet
from .rules import SINGLE_USE, Gradient, LinearRule, Norm, Pass, Rule, ZBox
from .validation import check_first_layer

ROUTING_MODULES = (*MAX_POOLS, *SHAPE_ONLY)


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
        self.out = out  # the module output, detached (returned into the graph by _RelevanceFn)
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


class _RelevanceFn(torch.autograd.Function):
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


class ForwardRecorder:
    """Context manager that records one forward pass: module hooks plus an op-level mode.

    Leaf modules in ``modules`` carry a module-level rule; the operations inside them are not
    looked at. Every other tensor operation that takes an input-dependent tensor is given an
    op-level rule by :class:`~.opmode.OpHandler`, through a ``TorchFunctionMode`` that is active
    only inside this context (torch keeps modes per thread). Hooks are on every module (the op
    names need the module path) and are removed on exit, also after an error.

    After the pass, :attr:`nodes` lists the Conv/Linear-type rule nodes in call order,
    :attr:`outputs` maps layer names to the tensor where relevance is captured (the last call
    wins), :attr:`activations` to their activation (a tensor or a node that recomputes it),
    :attr:`order` lists module and op names in call order and :attr:`layers` the capturable ones.
    """

    def __init__(
        self,
        model: nn.Module,
        modules: dict[str, nn.Module],
        ruleset: RuleSet,
        merge_bn: bool,
        capture_types: tuple[type, ...],
        merged: dict[tuple[int, int], tuple[Tensor, Tensor] | None] | None = None,
        op_level: dict[str, nn.Module] | None = None,
    ) -> None:
        from .opmode import OpHandler
        from .opnodes import Ledger

        self.model = model
        self.modules = modules
        self.ruleset = ruleset
        self.merge_bn = merge_bn
        # (layer module id, BatchNorm id) -> merged weights; the engine drops it with its other
        # weight caches when a weight changes
        self.merged = {} if merged is None else merged
        self.capture_types = capture_types
        # Conv/Linear modules whose own forward computes what F.conv2d/F.linear get (weight
        # standardisation, padding in forward): their call inside is the layer (.opmode)
        self.op_level = {} if op_level is None else op_level
        self.nodes: list[Node] = []
        self.outputs: dict[str, Tensor] = {}
        self.activations: dict[str, Any] = {}
        self.order: list[str] = []
        self.layers: list[str] = []
        self.op_names: list[str] = []  # every op call on input-dependent tensors, in order
        self.ledger = Ledger()
        self.info: Any = WeakIdKeyDictionary()
        self.saved: dict[int, list[Any]] = {}  # storage -> nodes holding an input from it
        self.stack: list[str] = []
        self.rule_depth = 0
        self.paused = 0
        self.first_seen = False  # the first Conv/Linear layer was called (z^B is given)
        self.first_checked = False  # the first Conv/Linear layer's input was checked
        self.input: Tensor | None = None  # the model input (the graph's leaf)
        self.batch: int | None = None  # the input's batch size (layers must lead with it)
        # a refusal raised inside an operator (``a * b``), which torch turns into NotImplemented
        # (it subclasses TypeError): the engine raises it after the forward pass
        self.refusal: BaseException | None = None
        # op nodes that concatenate constant tokens to a signal -> where the constants are
        self.absorbing: dict[str, Tensor] = {}
        self._inputs: dict[str, list[Tensor]] = {}
        self._handles: list[Any] = []
        self._mode = _Mode(OpHandler(self))
        self._mode_on = False

    @functools.cached_property
    def params(self) -> dict[int, tuple[str, Tensor]]:
        """``id(parameter) -> (owning module path, parameter)``, made when a functional Conv/Linear
        call first needs it (most models never do)."""
        return {id(p): (n.rpartition(".")[0], p) for n, p in self.model.named_parameters()}

    def __enter__(self) -> ForwardRecorder:
        try:
            reserve_hook_ids(self.model)
            for name, module in self.model.named_modules():
                rule_leaf = name in self.modules
                self._handles.append(
                    module.register_forward_pre_hook(self._pre_hook(name, rule_leaf))
                )
                self._handles.append(module.register_forward_hook(self._post_hook(name, rule_leaf)))
            self._mode.__enter__()
            self._mode_on = True
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()

    def _remove(self) -> None:
        try:
            if self._mode_on:
                self._mode_on = False
                self._mode.__exit__(None, None, None)
        finally:
            for handle in self._handles:
                handle.remove()
            self._handles.clear()

    def mode(self) -> Any:
        """The op-level mode, to re-enter from inside an op rule (a decomposed fused op)."""
        return self._mode

    def tag(
        self,
        value: Any,
        producer: Any = None,
        gate: bool = False,
        bounds: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        """Mark the floating-point tensors in ``value`` as input-dependent."""
        if isinstance(value, Tensor):
            if value.is_floating_point():
                self.info[value] = Info(producer, gate, bounds)
        elif isinstance(value, (tuple, list)):
            for v in value:
                self.tag(v, None, gate)

    def bounds_of(self, value: Tensor) -> tuple[Tensor, Tensor] | None:
        """The z^B bounds that came with ``value`` from the model input (None: none traced)."""
        info = self.info.get(value)
        return None if info is None else info.bounds

    def check_first(self, name: str, layer: Any, value: Any) -> None:
        """Check the input of the first Conv/Linear layer reached (in data flow, not in the
        order of definition) against that layer (a module, or a functional call's
        :class:`~.ops.LinearOp`): a clear error instead of a shape error."""
        if self.first_checked or not isinstance(value, Tensor) or value not in self.info:
            return
        self.first_checked = True
        assert self.input is not None
        check_first_layer(name, layer, value, self.input)

    def first_layer_node(self, node: Node, inp: Tensor) -> None:
        """Give the first layer's z^B rule the bounds that came with its input (.bounds)."""
        if not isinstance(node.rule, ZBox) or inp is self.input:
            return  # the model input itself: the rule's own bounds, cached per shape
        node.bounds = self.bounds_of(inp)
        if node.bounds is None:
            untraced_warning(node.name, stacklevel=6)

    def keep(self, node: Any, value: Tensor) -> None:
        """Register that ``node`` holds ``value`` (an input its rule reads in the backward pass)."""
        self.saved.setdefault(value.untyped_storage().data_ptr(), []).append(node)

    def protect(self, target: Tensor) -> None:
        """Before ``target`` is overwritten in place: nodes holding its data take a copy."""
        for node in self.saved.pop(target.untyped_storage().data_ptr(), []):
            node.protect()

    def add_layer(self, name: str, handle: Tensor, activation: Any) -> None:
        """Record a capturable layer: relevance is captured at ``handle``."""
        self.order.append(name)
        if not self._per_sample(handle):
            return
        self.layers.append(name)
        self.outputs[name] = handle
        self.activations[name] = activation

    def _per_sample(self, handle: Tensor) -> bool:
        """Whether a layer output leads with the batch axis, as captured layers must: windowed
        attention's ``(N * windows, ...)`` tensors are not layers (their rules still apply)."""
        return self.batch is None or (handle.ndim > 0 and handle.shape[0] == self.batch)

    def _pre_hook(self, name: str, rule_leaf: bool):
        def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            self.stack.append(name)
            if not self.first_checked and isinstance(module, LINEAR_TYPES) and args:
                self.check_first(name, module, args[0])
            if not rule_leaf:
                return None
            self.rule_depth += 1
            self.paused += 1
            try:
                return self._rule_pre_hook(name, module, args)
            finally:
                self.paused -= 1

        return hook

    def _post_hook(self, name: str, rule_leaf: bool):
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            self.stack.pop()
            if not rule_leaf:
                return None
            self.rule_depth -= 1
            self.paused += 1
            try:
                return self._rule_post_hook(name, module, output)
            finally:
                self.paused -= 1

        return hook

    def _rule_pre_hook(self, name: str, module: nn.Module, args: tuple[Any, ...]) -> Any:
        if len(args) != 1 or not isinstance(args[0], Tensor):
            raise UnsupportedLayerError(
                f"module {name!r} ({type(module).__name__}) was called with "
                f"{len(args)} positional inputs; relevance rules need exactly one tensor. "
                "Wrap the call so the module takes one tensor."
            )
        self._inputs.setdefault(name, []).append(args[0])
        if not getattr(module, "inplace", False) or args[0] not in self.info:
            return None
        self.protect(args[0])
        if isinstance(self.ruleset.rule_for(name, module), Pass):
            # runs in place on a graph-free alias: the data changes as in the plain model, the
            # relevance graph does not (no masking by the activation's own backward)
            return (args[0].detach(),)
        return (args[0].clone(),)

    def _rule_post_hook(self, name: str, module: nn.Module, output: Any) -> Tensor | None:
        inp = self._inputs[name].pop()
        if inp not in self.info:
            return None  # called on a constant (a position-bias table): not part of the graph
        if not isinstance(output, Tensor):
            raise UnsupportedLayerError(
                f"module {name!r} ({type(module).__name__}) returned "
                f"{type(output).__name__}, not a tensor; map it to a supported layer."
            )
        self.order.append(name)
        is_first = isinstance(module, LINEAR_TYPES) and not self.first_seen
        if isinstance(module, LINEAR_TYPES):
            self.first_seen = True
        rule = self.ruleset.rule_for(name, module, is_first)
        if rule is None:
            raise UnsupportedLayerError(no_rule_message(name, module))
        gate = isinstance(module, GATE_MODULES)
        bounds = None
        if not self.first_seen and isinstance(rule, (Gradient, Pass)):
            bounds = self._module_bounds(module, inp)
        if isinstance(rule, Gradient):
            return self._publish(name, module, output, output.detach(), None, gate, bounds)
        if isinstance(module, BATCH_NORMS) and self.merge_bn:
            rule = self._try_merge(module, inp, output, rule)
        if isinstance(rule, LinearRule) and not isinstance(module, LINEAR_TYPES):
            raise UnsupportedLayerError(
                f"rule {type(rule).__name__} needs a Conv/Linear layer, but module {name!r} "
                f"is {type(module).__name__}; map it to Pass(), Norm() or Gradient()."
            )
        node = Node(name, module, rule, inp, output.detach())
        node.ledger = self.ledger
        self.keep(node, node.a)
        if is_first:
            self.first_layer_node(node, inp)
        wrapped = _RelevanceFn.apply(inp, node)
        self.nodes.append(node)
        return self._publish(name, module, wrapped, node, node, gate, bounds)

    def _publish(
        self,
        name: str,
        module: nn.Module,
        handle: Tensor,
        act: Any,
        node: Any,
        gate: bool,
        bounds: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """The tensor the model gets from a rule module; capturable layers get an alias."""
        if not isinstance(module, self.capture_types) or not self._per_sample(handle):
            self.tag(handle, node, gate, bounds)
            return handle
        self.layers.append(name)
        self.outputs[name] = handle
        self.activations[name] = act
        alias = Alias.apply(handle)
        self.tag(alias, node, gate, bounds)
        return alias

    def _module_bounds(self, module: nn.Module, inp: Tensor) -> tuple[Tensor, Tensor] | None:
        """z^B bounds through a module before the first layer: one that moves values (max
        pooling, flatten, dropout in eval) or an eval-mode BatchNorm (element-wise affine)."""
        bounds = self.bounds_of(inp)
        if bounds is None or not isinstance(module, (*BATCH_NORMS, *ROUTING_MODULES)):
            return None
        low, high = bounds
        return through(module.forward, [low], [high])

    def _try_merge(self, bn: nn.Module, inp: Tensor, output: Tensor, rule: Rule) -> Rule:
        info = self.info.get(inp)
        producer = None if info is None else info.producer
        if not isinstance(producer, Node) or producer.bn is not None:
            return rule
        if not isinstance(producer.rule, LinearRule):
            return rule
        if producer.module is None:  # an op-level layer: its weights may be made per call
            merged = merge_batchnorm(*producer.layer_weights(), bn)
            producer.weight_key = None  # compared by value (the engine's weight cache)
        else:
            key = (id(producer.module), id(bn))
            if key not in self.merged:
                self.merged[key] = merge_batchnorm(*producer.layer_weights(), bn)
            merged = self.merged[key]
        if merged is None:
            return rule
        producer.bn = bn
        producer.weight, producer.bias = merged
        producer.merged_out = output.detach()
        producer.versions[False] = output._version
        return Pass()


class _Mode(TorchFunctionMode):
    """Hands every torch call of the recorded forward pass to the op handler."""

    def __init__(self, handler: Any) -> None:
        super().__init__()
        self.handler = handler

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return self.handler(func, args, kwargs or {})


def no_rule_message(name: str, module: nn.Module) -> str:
    kind = type(module).__name__
    return (
        f"no relevance rule for module {name!r} ({kind}). A rules mapping replaces the preset, "
        f"so give this layer a rule there, e.g. rules={{..., {name!r}: ZPlus()}}, or keep the "
        f"preset and extend it: overrides={{{name!r}: ZPlus()}} (rules from "
        "clrp_widgets.engine.rules)."
    )
