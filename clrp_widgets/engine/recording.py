"""The state of one recorded forward pass, and the one place that builds graph nodes.

:class:`Recording` is what the module hooks (:mod:`.hooks`) and the op handler (:mod:`.opmode`)
share, and the typed protocol op rules (:mod:`.attention`) use through the handler: which
tensors are input-dependent (:meth:`Recording.tag`, their producer, gate flag and z^B bounds),
the rule nodes and layers recorded so far, the conservation ledger, the first layer's checks,
and the two graph builders both paths use: :meth:`Recording.linear_node` (a Conv/Linear call,
module or functional) and :meth:`Recording.merge_batchnorm_into` (an eval-mode BatchNorm merged
into the layer before it, a module or a ``batch_norm`` call).
"""

from __future__ import annotations

import functools
from typing import Any

from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary

from .bounds import untraced_warning
from .canonizers import merge_batchnorm
from .graph import Info, Ledger, Node, RelevanceFn
from .ops import LinearOp
from .presets import RuleSet
from .rules import LinearRule, Rule, ZBox
from .validation import check_first_layer


class Recording:
    """What one forward pass has recorded so far (see the module docstring).

    After the pass, :attr:`nodes` lists the Conv/Linear-type rule nodes in call order,
    :attr:`outputs` maps layer names to the tensor where relevance is captured (the last call
    wins), :attr:`activations` to their activation (a tensor or a node that recomputes it),
    :attr:`order` lists module and op names in call order and :attr:`layers` the capturable ones.
    """

    def __init__(
        self,
        model: nn.Module,
        ruleset: RuleSet,
        merge_bn: bool,
        merged: dict[tuple[int, int], tuple[Tensor, Tensor] | None] | None = None,
        op_level: dict[str, nn.Module] | None = None,
    ) -> None:
        self.model = model
        self.ruleset = ruleset
        self.merge_bn = merge_bn
        # (layer module id, BatchNorm id) -> merged weights; the engine drops it with its other
        # weight caches when a weight changes
        self.merged = {} if merged is None else merged
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
        self.stack: list[str] = []  # the module path of the running call
        self.rule_depth = 0  # > 0 inside a module with a module-level rule
        self.paused = 0  # > 0 while the recorder's own code runs torch calls
        self.first_seen = False  # the first Conv/Linear layer was called (z^B is given)
        self.first_checked = False  # the first Conv/Linear layer's input was checked
        self.input: Tensor | None = None  # the model input (the graph's leaf)
        self.batch: int | None = None  # the input's batch size (layers must lead with it)
        # a refusal raised inside an operator (``a * b``), which torch turns into NotImplemented
        # (it subclasses TypeError): the engine raises it after the forward pass
        self.refusal: BaseException | None = None
        # op nodes that concatenate constant tokens to a signal -> where the constants are
        self.absorbing: dict[str, Tensor] = {}
        self.op_mode: Any = None  # the op-level TorchFunctionMode (set by the hooks' recorder)

    @functools.cached_property
    def params(self) -> dict[int, tuple[str, Tensor]]:
        """``id(parameter) -> (owning module path, parameter)``, made when a functional Conv/Linear
        call first needs it (most models never do)."""
        return {id(p): (n.rpartition(".")[0], p) for n, p in self.model.named_parameters()}

    def mode(self) -> Any:
        """The op-level mode, to re-enter from inside an op rule (a decomposed fused op)."""
        return self.op_mode

    # ---------------------------------------------------------------- tensors
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

    def keep(self, node: Any, value: Tensor) -> None:
        """Register that ``node`` holds ``value`` (an input its rule reads in the backward pass)."""
        self.saved.setdefault(value.untyped_storage().data_ptr(), []).append(node)

    def protect(self, target: Tensor) -> None:
        """Before ``target`` is overwritten in place: nodes holding its data take a copy."""
        for node in self.saved.pop(target.untyped_storage().data_ptr(), []):
            node.protect()

    def stash_refusal(self, err: BaseException) -> None:
        """Keep the first refusal of the pass (torch may swallow it inside an operator)."""
        if self.refusal is None:
            self.refusal = err

    # ---------------------------------------------------------------- layers
    def add_layer(self, name: str, handle: Tensor, activation: Any) -> None:
        """Record a capturable layer: relevance is captured at ``handle``."""
        self.order.append(name)
        if not self.per_sample(handle):
            return
        self.layers.append(name)
        self.outputs[name] = handle
        self.activations[name] = activation

    def per_sample(self, handle: Tensor) -> bool:
        """Whether a layer output leads with the batch axis, as captured layers must: windowed
        attention's ``(N * windows, ...)`` tensors are not layers (their rules still apply)."""
        return self.batch is None or (handle.ndim > 0 and handle.shape[0] == self.batch)

    def check_first(self, name: str, layer: Any, value: Any) -> None:
        """Check the input of the first Conv/Linear layer reached (in data flow, not in the
        order of definition) against that layer (a module, or a functional call's
        :class:`~.ops.LinearOp`): a clear error instead of a shape error."""
        if self.first_checked or not isinstance(value, Tensor) or value not in self.info:
            return
        self.first_checked = True
        assert self.input is not None
        check_first_layer(name, layer, value, self.input)

    def linear_node(
        self,
        name: str,
        module: nn.Module | None,
        rule: Rule,
        inp: Tensor,
        out: Tensor,
        is_first: bool,
        call: tuple[LinearOp, Tensor, Tensor | None] | None = None,
    ) -> tuple[Node, Tensor]:
        """The rule node of one layer call, in the graph: ``(node, its output handle)``.

        ``module`` is the layer module (its weights are read by the engine), or None with
        ``call = (op, weight, bias)`` for a functional call, whose weights are this call's.
        """
        node = Node(name, module, rule, inp, out.detach())
        node.ledger = self.ledger
        self.keep(node, node.a)
        if call is not None:
            node.op, weight, bias = call
            node.weight = weight.detach()
            node.bias = None if bias is None else bias.detach()
            node.weight_key = (weight.data_ptr(), weight._version, weight.shape, weight.stride())
        if is_first and isinstance(rule, ZBox) and inp is not self.input:
            # z^B gets the bounds that came with its input (.bounds); the model input itself
            # uses the rule's own bounds, cached per shape
            node.bounds = self.bounds_of(inp)
            if node.bounds is None:
                untraced_warning(node.name, stacklevel=6)
        self.nodes.append(node)
        return node, RelevanceFn.apply(inp, node)

    def merge_batchnorm_into(
        self, inp: Tensor, bn: Any, output: Tensor, key: tuple[int, int] | None = None
    ) -> bool:
        """Merge eval-mode BatchNorm ``bn`` (a module, or a namespace of a ``batch_norm``
        call's statistics and affine) into the Conv/Linear node that made ``inp``.

        ``key`` caches the merged weights of a module pair; without it (a functional call, or a
        layer whose weights are made per call) they are merged for this pass and compared by
        value in the engine's weight cache. Returns whether it merged (else the BatchNorm keeps
        its own rule).
        """
        info = self.info.get(inp)
        producer = None if info is None else info.producer
        if not isinstance(producer, Node) or producer.bn is not None:
            return False
        if not isinstance(producer.rule, LinearRule):
            return False
        if producer.module is None or key is None:
            merged = merge_batchnorm(*producer.layer_weights(), bn)
            producer.weight_key = None
        else:
            if key not in self.merged:
                self.merged[key] = merge_batchnorm(*producer.layer_weights(), bn)
            merged = self.merged[key]
        if merged is None:
            return False
        producer.bn = bn
        producer.weight, producer.bias = merged
        producer.merged_out = output.detach()
        producer.versions[False] = output._version
        return True
