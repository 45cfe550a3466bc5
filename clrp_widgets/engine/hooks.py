"""Forward-pass recording: module hooks, and the op-level mode that hands every torch call to the
op handler (:mod:`.opmode`); both record into the same :class:`~.recording.Recording`.

Each module with a relevance rule gets its output replaced by ``RelevanceFn(input)``, whose
backward is the rule instead of the gradient. Modules with the :class:`Gradient` rule keep their
plain gradient (max-pool winner-takes-all, dropout, flatten). The hooks exist only during the
forward pass (:class:`ForwardRecorder` is a context manager with ``try/finally``); the backward
passes run on the recorded graph alone, so the model never carries hooks between calls.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .bounds import through
from .errors import UnsupportedLayerError
from .graph import Alias
from .hookids import reserve_hook_ids
from .opmode import OpHandler
from .ops import LINEAR_TYPES
from .optable import GATE_MODULES
from .presets import BATCH_NORMS, MAX_POOLS, SHAPE_ONLY, RuleSet
from .recording import Recording
from .rules import Gradient, LinearRule, Pass

ROUTING_MODULES = (*MAX_POOLS, *SHAPE_ONLY)


class ForwardRecorder(Recording):
    """Context manager that records one forward pass: module hooks plus an op-level mode.

    Leaf modules in ``modules`` carry a module-level rule; the operations inside them are not
    looked at. Every other tensor operation that takes an input-dependent tensor is given an
    op-level rule by :class:`~.opmode.OpHandler`, through a ``TorchFunctionMode`` that is active
    only inside this context (torch keeps modes per thread). Hooks are on every module (the op
    names need the module path) and are removed on exit, also after an error. What the pass
    recorded is the :class:`~.recording.Recording` this class is.
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
        super().__init__(model, ruleset, merge_bn, merged, op_level)
        self.modules = modules
        self.capture_types = capture_types
        self._inputs: dict[str, list[Tensor]] = {}
        self._handles: list[Any] = []
        self.op_mode = _Mode(OpHandler(self))
        self._mode_on = False

    def __enter__(self) -> ForwardRecorder:
        try:
            reserve_hook_ids(self.model)
            for name, module in self.model.named_modules():
                rule_leaf = name in self.modules
                self._handles.append(
                    module.register_forward_pre_hook(self._pre_hook(name, rule_leaf))
                )
                self._handles.append(module.register_forward_hook(self._post_hook(name, rule_leaf)))
            self.op_mode.__enter__()
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
                self.op_mode.__exit__(None, None, None)
        finally:
            for handle in self._handles:
                handle.remove()
            self._handles.clear()

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
            if self.merge_batchnorm_into(inp, module, output, self._merge_key(inp, module)):
                rule = Pass()
        if isinstance(rule, LinearRule) and not isinstance(module, LINEAR_TYPES):
            raise UnsupportedLayerError(
                f"rule {type(rule).__name__} needs a Conv/Linear layer, but module {name!r} "
                f"is {type(module).__name__}; map it to Pass(), Norm() or Gradient()."
            )
        node, wrapped = self.linear_node(name, module, rule, inp, output, is_first)
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
        if not isinstance(module, self.capture_types) or not self.per_sample(handle):
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

    def _merge_key(self, inp: Tensor, bn: nn.Module) -> tuple[int, int] | None:
        """The merged-weights cache key of (layer module, BatchNorm module), if the layer that
        made ``inp`` is a module."""
        info = self.info.get(inp)
        module = getattr(None if info is None else info.producer, "module", None)
        return None if module is None else (id(module), id(bn))


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
