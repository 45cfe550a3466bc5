"""The relevance engine: one forward pass, then LRP/CLRP backward passes on the recorded graph.

How it works
------------
The forward pass runs the unmodified model with hooks that put each rule layer's output behind a
custom autograd function whose backward is the layer's LRP rule. Relevance is then an ordinary
``torch.autograd.grad`` of the logits, seeded with the relevance seed: every rule is linear in the
seed, so ``target - dual`` is one backward pass (DESIGN §1).

Caching
-------
- Modified weights (W+, W-, gamma-shifted, BatchNorm-merged) are computed once per engine and
  reused; they are recomputed only when a parameter or buffer changes (its storage, version
  counter or bits: :mod:`~clrp_widgets.engine.fingerprint`), so they are never recomputed per
  call.
- The last forward pass is kept, keyed on the input's content (``torch.equal`` against a copy)
  and the weights' fingerprint: a second call on the same ``x`` (e.g. a widget switching target,
  contrast or layer) runs only backward passes. :meth:`RelevanceEngine.clear_cache` frees it.

Model safety
------------
Hooks live only during the forward pass (``try/finally``), the residual-sum canonizer's forward
override likewise, and weights are never written. A model in training mode is explained in eval
semantics: every module's ``training`` flag is set to False for the forward pass and restored
afterwards, with a ``UserWarning``. Calls are serialised by the model's lock
(:func:`~clrp_widgets.engine.locking.model_lock`), shared by every engine, explainer, baseline and
widget on that model, so a widget's worker thread and the notebook may share it.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from .axes import LayerAxes, layer_axes
from .bounds import of_input
from .canonizers import resolve_canonizers
from .errors import ConfigError, InputError, LayerNotFoundError, UnsupportedLayerError
from .fingerprint import weights_fingerprint
from .graph import Node
from .guard import check_ledger, check_model_input, unwrap_compiled
from .hooks import ForwardRecorder, no_rule_message
from .locking import model_lock
from .ops import LINEAR_TYPES, LinearOp, runs_at_op_level
from .outputs import OutputSelector, select_logits
from .presets import AVG_POOLS, MAX_POOLS, Bound, apply_overrides, normalize_bounds, resolve_rules
from .rules import Epsilon, Flat, LinearRule, Rule, ZBox, ZPlus
from .seeds import Seed, class_seeds
from .validation import (
    check_channel,
    check_contrast,
    check_input,
    check_kinds,
    check_layer,
    check_pairwise,
    check_targets,
    eval_semantics,
)

CAPTURE_TYPES = (*LINEAR_TYPES, *MAX_POOLS, *AVG_POOLS)
F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    """Serialise calls on one engine (the hooks of two concurrent forward passes would mix)."""

    @functools.wraps(method)
    def wrapper(self: RelevanceEngine, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass
class LayerCapture:
    """One layer's output ``activation`` (N, ...) and the ``relevance`` (K, N, ...) at it."""

    activation: Tensor
    relevance: Tensor


@dataclass
class EngineOutput:
    """Result of one engine call; the leading K axis of maps follows :attr:`kinds`."""

    logits: Tensor
    targets: Tensor
    kinds: tuple[str, ...]
    input: Tensor
    layers: dict[str, LayerCapture]
    seed_sums: Tensor
    axes: dict[str, LayerAxes] = field(default_factory=dict)  # where each layer's neurons are


@dataclass
class _ForwardPass:
    x: Tensor  # the input, requires grad (leaf of the graph)
    logits: Tensor
    nodes: list[Node]
    outputs: dict[str, Tensor]
    activations: dict[str, Any]  # Tensor, or the node that recomputes it
    order: list[str]  # module and op names in call order
    layers: list[str]  # capturable layers, in order of their first call
    logit_node: Node | None
    ledger: Any  # the nodes' Ledger (conservation guard)
    # the last contrast-only pass over this forward pass: (its request, its maps), so that the
    # next request for all three kinds costs one pass (the target's), the dual being derived
    last_contrast: tuple[Any, tuple[Tensor, list[Tensor]]] | None = None
    axes: dict[str, LayerAxes] | None = None  # where each layer's neurons are, made once
    absorbing: dict[str, Tensor] = field(default_factory=dict)  # constant-token layers


class RelevanceEngine:
    """LRP and contrastive LRP for a PyTorch classifier.

    Parameters
    ----------
    model
        A classifier returning logits ``(N, classes)``, or an output they can be found in
        (Hugging Face ``ModelOutput``, a dict or tuple: :mod:`.outputs`). It is never modified.
    rules
        A preset name (see :mod:`clrp_widgets.engine.presets`) or a mapping
        ``{layer type or module name: Rule}``.
    input_bounds
        ``(low, high)``: the lowest and highest possible input values for the z^B first-layer
        rule, scalars or per-channel tensors ``(C,)``. None uses the CLRP authors' bounds for
        ImageNet-normalised input, ``(-2.1179, 2.64)``, and warns about input outside them.
    canonizers
        ``"auto"`` (default), None, or a subset of ``("batchnorm", "resnet")``. Residual sums of
        any model are split in proportion at op level; ``"resnet"`` is kept for compatibility
        and changes nothing.
    keep_denominators
        True (default): the rules' per-input denominators (e.g. z+ sums) are kept with the cached
        forward pass, so later requests on the same input cost one backward pass each (what the
        widgets need). False: they are made during each backward pass and dropped, so a one-shot
        map needs about as much memory as a gradient (what the functional API uses).
    overrides
        ``{module path, op node name, layer type or torch function: Rule}`` that extends the
        preset (or mapping) given as ``rules``, e.g. ``{"features.1.0.stochastic_depth": Pass(),
        "layer1.0:add": Norm(), torch.erf: Pass()}``; overrides win.
    output
        Where the class scores are in the model's output when it is not a tensor: None finds
        ``.logits``, a ``"logits"`` entry or the only ``(N, classes)`` tensor of a tuple; else a
        key or attribute name, an index or a callable (:mod:`.outputs`).

    Notes
    -----
    Operations outside modules with a module-level rule (residual sums, gates, functional
    pooling, ``torch.flatten``, ...) get op-level rules (:mod:`clrp_widgets.engine.opmode`);
    those that carry a rule are layers named ``<module path>:<op>``, e.g. ``"layer1.0:add"``.
    A Conv/Linear module with a ``forward`` of its own (weight standardisation, padding in
    ``forward``, ``padding_mode="reflect"``) is explained through the ``F.conv2d``/``F.linear``
    call it makes, with the weights of that call, and keeps its module name as the layer name.
    With a conservative preset (``"paper"``) every call checks that no layer loses or gains
    more than 1e-4 of the explained output and warns (:class:`~.errors.ConservationWarning`).
    """

    def __init__(
        self,
        model: nn.Module,
        rules: str | Mapping[Any, Rule] = "paper",
        input_bounds: tuple[Bound, Bound] | None = None,
        canonizers: str | Sequence[str] | None = "auto",
        keep_denominators: bool = True,
        overrides: Mapping[Any, Rule] | None = None,
        output: OutputSelector = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        model = unwrap_compiled(model)
        self.model = model
        self.rules = rules if isinstance(rules, str) else "custom"
        self.bounds_given = input_bounds is not None
        self.input_bounds = normalize_bounds(input_bounds)
        self.ruleset = apply_overrides(resolve_rules(rules, input_bounds), overrides)
        self.canonizers = resolve_canonizers(model, canonizers)
        self._leaves = {n: m for n, m in model.named_modules() if not any(m.children())}
        self.output = output
        self._ops: dict[str, LinearOp] = {}
        self._op_level: dict[str, nn.Module] = {}
        self._rule_leaves = self._check_supported()
        # module layers: (name, rule id, BatchNorm id) -> prepared weights; op-level calls:
        # (name, rule id, merged) -> (weight, bias, prepared), checked against each call's weights
        self._prepared: dict[tuple[Any, ...], Any] = {}
        self._merged: dict[tuple[int, int], tuple[Tensor, Tensor] | None] = {}  # BatchNorm merges
        self._fingerprint: tuple[Any, ...] | None = None
        self._cache: _ForwardPass | None = None
        self._layer_order: list[str] | None = None
        self._lock = model_lock(model)  # shared by every engine on this model
        self.keep_denominators = bool(keep_denominators)

    # ------------------------------------------------------------------ public API
    def layer_names(self) -> list[str]:
        """Capturable layers in forward order: Conv, Linear and pooling modules, and op-level
        layers ``<module path>:<op>`` (residual sums, gates, functional pooling and Conv/Linear).

        Before the first forward pass: the modules only, in definition order (op-level layers
        are known once the model ran). Modules the forward pass never calls are left out.
        """
        if self._layer_order is not None:
            return list(self._layer_order)
        return [n for n, m in self._leaves.items() if isinstance(m, CAPTURE_TYPES)]

    def constant_tokens(self) -> dict[str, Tensor]:
        """Layers that concatenate constants to the signal (a ViT's class, distillation or
        register tokens), each with a mask that is True at the constants' entries.

        Relevance that reaches a constant token stays there (as a bias's share does), so the
        input map sums to the explained output less what these entries hold at their layer;
        the conservation guard accounts for it. Known after the first forward pass.
        """
        fp = self._cache
        return {} if fp is None else {n: m.clone() for n, m in fp.absorbing.items()}

    def layer_axes(self) -> dict[str, LayerAxes]:
        """Where each layer's neurons are (:mod:`.axes`): channels, hidden units or heads.

        Known after the first forward pass (empty before).
        """
        fp = self._cache
        return {} if fp is None else self._axes(fp)

    @_locked
    def logits(self, x: Tensor) -> Tensor:
        """The model's logits for ``x`` from the engine's own (cached) forward pass.

        A later explanation of the same ``x`` reuses this forward pass, and the op-level layers
        are known afterwards (:meth:`layer_names`).
        """
        return self._forward(self._check_x(x)).logits.detach().clone()

    @_locked
    def clear_cache(self) -> None:
        """Drop the cached forward pass (its activations and graph)."""
        self._cache = None

    @_locked
    def run(
        self,
        x: Tensor,
        target: Any,
        contrast: str | int = "clrp1",
        kinds: Sequence[str] | None = None,
        capture: str | Sequence[str] | None = None,
        dual_seed: str = "uniform",
    ) -> EngineOutput:
        """Relevance of the class decision ``target`` at the input and at captured layers.

        Parameters
        ----------
        x
            Input batch (N, C, H, W), floating point.
        target
            One class index for all samples, or one per sample.
        contrast
            ``"lrp"``, ``"clrp1"``, ``"clrp2"``, ``"sglrp"`` or a class index B (pairwise: the
            target rather than B).
        kinds
            Subset of ``("target", "dual", "contrast")`` in the order wanted; None gives
            ``("contrast",)``, or ``("target",)`` for ``"lrp"`` (which allows only that).
            ``contrast = target - dual`` (not clipped). The contrast alone is one backward pass of
            the seed difference; all three take two passes (contrast is derived).
        capture
            None, ``"all"`` (every name of :meth:`layer_names`) or a list of module names.
        dual_seed
            ``"uniform"`` (the paper) or ``"logits"`` (the authors' code, CLRP1 only): the dual seed
            is ``|z_k|`` on ``k != j`` and the target and dual maps are each divided by their
            input-map sum before subtracting, so both are computed (two passes) even for the
            contrast alone, and every layer's maps are scaled by the same per-sample factors.

        Notes
        -----
        CLRP2's dual row ``-W_j`` is virtual: a captured logit layer shows no dual relevance at its
        output (the dual enters at its input). ``seed_sums`` count the virtual seed.
        """
        contrast = check_contrast(contrast, dual_seed)
        if kinds is None:
            kinds = ("target",) if contrast == "lrp" else ("contrast",)
        kinds = check_kinds(kinds, contrast)
        x = self._check_x(x)
        fp = self._forward(x)
        names = self._capture_names(capture)
        n, n_classes = fp.logits.shape
        targets = check_targets(target, n, n_classes, fp.logits.device)
        check_pairwise(contrast, targets, n_classes)
        t_seed, d_seed = class_seeds(fp.logits.detach(), targets, contrast, dual_seed)
        seeds = {"target": t_seed}
        if d_seed is not None:
            seeds.update(dual=d_seed, contrast=t_seed - d_seed)
        normalise = dual_seed == "logits"
        derive = "contrast" in kinds and (normalise or {"target", "dual"} <= set(kinds))
        compute = ["target", "dual"] if normalise else [k for k in kinds if k != "contrast"]
        if "contrast" in kinds and not derive:
            compute.append("contrast")
        request = (contrast, dual_seed, tuple(targets.tolist()), tuple(names))
        maps = {}
        last = fp.last_contrast
        if "contrast" in kinds and not normalise and last is not None and last[0] == request:
            maps["contrast"] = last[1]  # the dual is target - contrast: one pass less
            compute = ["target"] if {"target", "dual"} & set(kinds) else []
            derive = False
        with self._denominators(fp, several_passes=len(compute) > 1):
            for k in compute:
                with self._guard(fp, seeds[k].scale(), seeds[k].total(), k) as check:
                    maps[k] = self._class_backprop(fp, seeds[k], targets, names)
                    check.append(maps[k][0])
        if compute == ["contrast"]:
            fp.last_contrast = (request, maps["contrast"])
        if "dual" in kinds and "dual" not in maps:
            maps["dual"] = _difference(maps["target"], maps["contrast"])
        sums = {k: seeds[k].total() for k in {*compute, *kinds}}
        if normalise:
            for k in ("target", "dual"):
                scale = 1.0 / maps[k][0].flatten(1).sum(1)
                maps[k] = _scaled(maps[k], scale)
                sums[k] = sums[k] * scale
        if derive:
            maps["contrast"] = _difference(maps["target"], maps["dual"])
            sums["contrast"] = sums["target"] - sums["dual"]
        return self._output(fp, targets, kinds, maps, sums, names)

    @_locked
    def neuron(
        self,
        x: Tensor,
        layer: str,
        channel: int,
        contrast: str | int | None = "layer",
        kinds: Sequence[str] | None = None,
        capture: str | Sequence[str] | None = None,
    ) -> EngineOutput:
        """The paper's neuron explanation: relevance of one channel's activation at ``layer``.

        The target seed is the channel's activation map at ``layer``. ``contrast="layer"``: the
        dual seed spreads the same total evenly over every position of the layer's other channels;
        an int ``c2``: the dual seed is channel ``c2``'s activation rescaled to the same total
        (evenly spread if it is all zero); None: plain LRP of the neuron. ``kinds`` defaults to all
        three (``("target",)`` for None). Captured layers after ``layer`` are left out. The
        output's ``targets`` hold ``channel`` for every sample.
        """
        x = self._check_x(x)
        if contrast is not None and contrast != "layer":
            if isinstance(contrast, bool) or not isinstance(contrast, int):
                raise ConfigError(
                    f"neuron contrast must be 'layer', None or an int channel, got {contrast!r}."
                )
        if kinds is None:
            kinds = ("target",) if contrast is None else ("target", "dual", "contrast")
        kinds = check_kinds(kinds, "lrp" if contrast is None else "neuron")
        fp = self._forward(x)
        layer = check_layer(layer, self.layer_names())
        axis = self._axes(fp)[layer].feature
        act = self._activation(fp, layer).movedim(axis, 1)  # neurons on axis 1 (a view)
        n_ch = act.shape[1]
        channel = check_channel(channel, n_ch, layer)
        target = torch.zeros_like(act)
        target[:, channel] = act[:, channel]
        seeds = {"target": target}
        if contrast is not None:
            total = act[:, channel].reshape(act.shape[0], -1).sum(1)
            per_pos = act[0, 0].numel()
            dual = torch.zeros_like(act)
            if contrast == "layer":
                if n_ch < 2:
                    raise InputError(f"layer {layer!r} has one channel; use contrast=None.")
                spread = (total / ((n_ch - 1) * per_pos)).reshape(-1, *([1] * (act.ndim - 1)))
                dual[:] = spread
                dual[:, channel] = 0
            else:
                other = check_channel(contrast, n_ch, layer)
                if other == channel:
                    raise InputError("the contrast channel must differ from the explained one.")
                a2 = act[:, other].reshape(act.shape[0], -1)
                t2 = a2.sum(1)
                even = (total / per_pos)[:, None].expand_as(a2)
                scaled = torch.where(t2[:, None] != 0, a2 * (total / t2)[:, None], even)
                dual[:, other] = scaled.reshape(act[:, other].shape)
            seeds.update(dual=dual, contrast=target - dual)
        seeds = {k: v.movedim(1, axis) for k, v in seeds.items()}
        names = self._capture_names(capture)
        order = fp.order
        last = max(i for i, n in enumerate(order) if n == layer)
        names = [n for n in names if n in order[: last + 1]]
        root = fp.outputs[layer]
        maps, sums = {}, {}
        with self._denominators(fp, several_passes=len(kinds) > 1):
            for k in kinds:
                sums[k] = seeds[k].reshape(seeds[k].shape[0], -1).sum(1)
                scale = seeds[k].abs().reshape(seeds[k].shape[0], -1).sum(1)
                with self._guard(fp, scale, sums[k], k, exempt=layer) as check:
                    maps[k] = self._backprop(fp, [root], [seeds[k]], names)
                    check.append(maps[k][0])
        targets = torch.full((act.shape[0],), channel, dtype=torch.long, device=act.device)
        return self._output(fp, targets, kinds, maps, sums, names)

    @_locked
    def conditional(
        self,
        x: Tensor,
        target: Any,
        layer: str,
        channels: Sequence[int],
        contrast: str | int = "clrp1",
        dual_seed: str = "uniform",
        chunk: int = 8,
    ) -> Tensor:
        """Per-channel conditional maps, shape ``(len(channels), N, C, H, W)``.

        Map ``g`` is the class decision's relevance (the unclipped contrast map, or the LRP map for
        ``"lrp"``) at ``layer``, restricted to channel ``channels[g]``, propagated to the input.
        The maps of all channels sum to the decision's input map (for channels covering the layer).

        One forward pass (cached) and one decision pass down to ``layer`` serve every channel; the
        channel maps then come from batched backward passes from ``layer`` to the input
        (``torch.autograd.grad(..., is_grads_batched=True)``), ``chunk`` channels per pass, which
        bounds the extra memory to ``chunk`` relevance maps per layer.
        """
        contrast = check_contrast(contrast, dual_seed)
        x = self._check_x(x)
        fp = self._forward(x)
        layer = check_layer(layer, self.layer_names())
        n, n_classes = fp.logits.shape
        targets = check_targets(target, n, n_classes, fp.logits.device)
        check_pairwise(contrast, targets, n_classes)
        t_seed, d_seed = class_seeds(fp.logits.detach(), targets, contrast, dual_seed)
        seed = t_seed if d_seed is None else t_seed - d_seed
        axis = self._axes(fp)[layer].feature
        act = self._activation(fp, layer)
        chans = [check_channel(c, act.shape[axis], layer) for c in channels]
        root = fp.outputs[layer]
        with self._denominators(fp, several_passes=True):
            if dual_seed == "logits":
                assert d_seed is not None
                at_layer = self._normalised_contrast_at(fp, t_seed, d_seed, targets, root)
            else:
                roots, grads = self._class_roots(fp, seed, targets)
                (at_layer,) = torch.autograd.grad(roots, [root], grads, retain_graph=True)
            if not chans:
                return at_layer.new_zeros((0, *x.shape))
            seeds = at_layer.new_zeros((len(chans), *at_layer.shape))
            for g, c in enumerate(chans):
                seeds[g].select(axis, c).copy_(at_layer.select(axis, c))
            step = max(1, int(chunk))
            parts = [self._batched_to_input(fp, root, part) for part in seeds.split(step)]
        return torch.cat(parts)

    @_locked
    def relevance_along(
        self,
        x: Tensor,
        target: Any,
        path: Sequence[tuple[str, int]],
        into: str,
        contrast: str | int = "clrp1",
        dual_seed: str = "uniform",
    ) -> Tensor:
        """The decision's relevance at ``into``, restricted to one channel at each layer of
        ``path`` (CRP's conditional relevance along a path of neurons), shape ``(N, ...)`` of
        ``into``'s output.

        ``path`` lists ``(layer, channel)`` from the top down; the class decision's relevance
        (the unclipped contrast, or LRP's for ``"lrp"``) at ``path[0]``'s layer is kept on that
        channel only, propagated to the next layer of the path, kept on its channel, and so on
        down to ``into``, which is below the path or its last layer (then the masked relevance
        there is returned). Summed over ``into``'s channels it is the path's relevance (up to the
        rules' conservation).
        """
        contrast = check_contrast(contrast, dual_seed)
        x = self._check_x(x)
        known = self.layer_names()
        steps = [(check_layer(name, known), channel) for name, channel in path]
        into = check_layer(into, known)
        if not steps:
            raise InputError("path is empty; give at least one (layer, channel) pair.")
        fp = self._forward(x)
        last = {name: i for i, name in enumerate(fp.order)}
        names = [name for name, _ in steps] + [into]
        for i in range(1, len(names)):
            upper, lower = names[i - 1], names[i]
            if lower not in last or upper not in last or last[lower] > last[upper]:
                raise InputError(
                    f"layer {lower!r} is not below {upper!r} in the forward pass; list the path "
                    "from the top down and pick `into` at or below its last layer."
                )
        n, n_classes = fp.logits.shape
        targets = check_targets(target, n, n_classes, fp.logits.device)
        check_pairwise(contrast, targets, n_classes)
        t_seed, d_seed = class_seeds(fp.logits.detach(), targets, contrast, dual_seed)
        root = fp.outputs[steps[0][0]]
        axes = self._axes(fp)
        with self._denominators(fp, several_passes=True):
            if dual_seed == "logits":
                assert d_seed is not None
                at = self._normalised_contrast_at(fp, t_seed, d_seed, targets, root)
            else:
                seed = t_seed if d_seed is None else t_seed - d_seed
                roots, grads = self._class_roots(fp, seed, targets)
                (at,) = torch.autograd.grad(roots, [root], grads, retain_graph=True)
            for (name, channel), below in zip(steps, names[1:], strict=True):
                kept = torch.zeros_like(at)
                axis = axes[name].feature
                c = check_channel(channel, at.shape[axis], name)
                kept.select(axis, c).copy_(at.select(axis, c))
                at = kept
                if below != name:
                    (got,) = torch.autograd.grad(
                        [fp.outputs[name]], [fp.outputs[below]], [kept], retain_graph=True,
                        allow_unused=True,
                    )  # fmt: skip
                    at = torch.zeros_like(fp.outputs[below]) if got is None else got
        return at.detach()

    # ------------------------------------------------------------------ internals
    @contextlib.contextmanager
    def _denominators(self, fp: _ForwardPass, several_passes: bool) -> Iterator[None]:
        """Keep the rules' denominators while several backward passes need them; after the
        call, keep them with the cached forward pass only if ``keep_denominators``."""
        keep = self.keep_denominators or several_passes
        for node in fp.nodes:
            node.keep_state = keep
        try:
            yield
        finally:
            if not self.keep_denominators:
                for node in fp.nodes:
                    node.state = {}

    def _check_x(self, x: Any) -> Tensor:
        x = check_input(x)
        check_model_input(self.model, x)
        if not self.bounds_given and self._uses_box():
            low, high = self.input_bounds
            if bool((x < low - 1e-4).any() | (x > high + 1e-4).any()):
                warnings.warn(
                    f"x has values outside the default input_bounds {self.input_bounds} (the CLRP "
                    "authors' bounds for ImageNet-normalised input), which the first layer's z^B "
                    "rule assumes; pass input_bounds=(low, high) with the lowest and highest "
                    "possible input values, e.g. (0, 1).",
                    UserWarning,
                    stacklevel=4,
                )
        return x

    def _uses_box(self) -> bool:
        rs = self.ruleset
        rules = [rs.first, *rs.by_name.values(), *(r for _, r in rs.by_type)]
        return any(isinstance(r, ZBox) for r in rules)

    def _check_supported(self) -> dict[str, nn.Module]:
        """Leaf modules with a module-level rule (the others are handled at op level)."""
        rs = self.ruleset
        modules = dict(self.model.named_modules())
        for name in rs.by_name:
            if ":" not in name and name not in modules:
                check_layer(name, list(self._leaves))
        rule_leaves = {}
        for name, module in self._leaves.items():
            rule = rs.rule_for(name, module)
            if rule is None and rs.first is not None and isinstance(module, rs.first_types):
                rule = rs.first
            if rule is None and isinstance(module, LINEAR_TYPES):
                raise UnsupportedLayerError(no_rule_message(name, module), fix={name: ZPlus()})
            if isinstance(module, LINEAR_TYPES) and runs_at_op_level(module):
                self._op_level[name] = module  # its F.conv2d/F.linear call is the layer
                continue
            if rule is not None:
                rule_leaves[name] = module
            if isinstance(module, LINEAR_TYPES):
                self._ops[name] = LinearOp(module, name)
        return rule_leaves

    def _capture_names(self, capture: str | Sequence[str] | None) -> list[str]:
        """Layers to capture; call after the forward pass (which fixes the layer list)."""
        known = self.layer_names()
        if capture is None:
            return []
        if capture == "all":
            return known
        if isinstance(capture, str):
            capture = [capture]
        return [check_layer(name, known) for name in capture]

    def _fingerprint_now(self) -> tuple[Any, ...]:
        return weights_fingerprint(self.model)

    def _forward(self, x: Tensor) -> _ForwardPass:
        fingerprint = self._fingerprint_now()
        if fingerprint != self._fingerprint:
            self._prepared.clear()
            self._merged.clear()
            self._cache = None
            self._fingerprint = fingerprint
        c = self._cache
        if (
            c is not None
            and c.x.shape == x.shape
            and c.x.dtype == x.dtype
            and c.x.device == x.device
            and torch.equal(c.x.detach(), x)
        ):
            return c
        self._cache = None
        fp = self._record(x)
        with torch.no_grad():
            for node in fp.nodes:
                self._finalize(node)
        self._cache = fp
        self._layer_order = list(dict.fromkeys(fp.layers))
        return fp

    def _record(self, x: Tensor) -> _ForwardPass:
        model = self.model
        recorder = ForwardRecorder(
            model,
            self._rule_leaves,
            self.ruleset,
            "batchnorm" in self.canonizers,
            CAPTURE_TYPES,
            self._merged,
            self._op_level,
        )
        x_leaf = x.detach().clone().requires_grad_(True)
        first = self.ruleset.first
        bounds = of_input(first.low, first.high, x) if isinstance(first, ZBox) else None
        recorder.tag(x_leaf, bounds=bounds)
        recorder.input = x_leaf
        recorder.batch = x.shape[0]
        # warning frames: generator, __enter__, ExitStack, _record, _forward, run, lock, caller
        with contextlib.ExitStack() as stack:
            stack.enter_context(eval_semantics(model, stacklevel=8))
            stack.enter_context(recorder)
            try:
                with torch.enable_grad():
                    output = model(x_leaf)
            except TypeError:
                if recorder.refusal is not None:  # torch turned it into NotImplemented
                    raise recorder.refusal from None
                raise
        if recorder.refusal is not None:  # refused, and the model went round it
            raise recorder.refusal
        logits = select_logits(output, self.output, x.shape[0])
        self._check_override_names(recorder.op_names)
        logit_node = next(
            (
                nd
                for nd in reversed(recorder.nodes)
                if nd.out.data_ptr() == logits.data_ptr() and nd.out.numel() == logits.numel()
            ),
            None,
        )
        return _ForwardPass(
            x_leaf,
            logits,
            recorder.nodes,
            recorder.outputs,
            recorder.activations,
            recorder.order,
            recorder.layers,
            logit_node,
            recorder.ledger,
            absorbing=recorder.absorbing,
        )

    def _check_override_names(self, op_names: list[str]) -> None:
        seen = set(op_names)
        missing = [n for n in self.ruleset.by_name if ":" in n and n not in seen]
        if missing:
            raise ConfigError(
                f"rules/overrides name op node(s) {missing} that the forward pass never made; "
                f"op nodes of this model include {op_names[:8]}."
            )

    def _finalize(self, node: Node) -> None:
        rule = node.rule
        if not isinstance(rule, LinearRule):
            return
        module: Any = node.module
        if module is None:  # an op-level Conv/Linear call: its weights came with the call
            node.prepared = self._prepared_for_call(node, rule)
            return
        if node.bn is None:
            node.weight = module.weight.detach()
            node.bias = None if module.bias is None else module.bias.detach()
        key = (node.name, id(rule), id(node.bn))
        node.op = self._ops[node.name]
        if key not in self._prepared:
            assert node.weight is not None
            self._prepared[key] = rule.prepare(node.weight, node.bias)
        node.prepared = self._prepared[key]

    def _prepared_for_call(self, node: Node, rule: LinearRule) -> dict[str, Any]:
        """The prepared weights of an op-level call, reused while its weights stay the same.

        One entry per layer: the kept weight pins its storage, so an unchanged pointer and
        version mean the same tensor; a weight recomputed in each forward pass (weight
        standardisation, a BatchNorm merged per call) is compared by value.
        """
        weight, bias = node.weight, node.bias
        assert weight is not None
        key = (node.name, id(rule), node.bn is not None)
        entry = self._prepared.get(key)
        if entry is not None:
            old_key, old_weight, old_bias, prepared = entry
            if (old_key is not None and old_key == node.weight_key) or (
                _same(old_weight, weight) and _same(old_bias, bias)
            ):
                return prepared
        prepared = rule.prepare(weight, bias)
        self._prepared[key] = (node.weight_key, weight, bias, prepared)
        return prepared

    @contextlib.contextmanager
    def _guard(
        self,
        fp: _ForwardPass,
        scale: Tensor,
        seed_total: Tensor,
        kind: str,
        exempt: str | None = None,
    ) -> Iterator[list[Tensor]]:
        """Record the block's backward pass and check conservation (conservative presets only).

        The block appends the input map to the yielded list; every rule node's relevance in and
        out, and the input map against the seed, must agree within 1e-4 of ``scale`` (the
        per-sample absolute seed sum), or a :class:`~.errors.ConservationWarning` names the layer.
        The seeded layer (``exempt``) may drop seed it cannot attribute: by default the logit
        layer, for the dual and contrast kinds only (CLRP's dual seeds classes that may have no
        positive evidence). The target kind seeds the explained logit alone, so a loss there (a
        logit below the rules' stabiliser) is reported like any other.
        """
        check: list[Tensor] = []
        if not self.ruleset.conservative:
            yield check
            return
        ledger = fp.ledger
        ledger.start()
        try:
            yield check
        finally:
            ledger.active = False
        records, ledger.records = ledger.records, []
        if exempt is None and fp.logit_node is not None and kind != "target":
            exempt = fp.logit_node.name
        check_ledger(
            records, scale, kind, check[0] if check else None, seed_total, exempt, fp.absorbing
        )

    def _axes(self, fp: _ForwardPass) -> dict[str, LayerAxes]:
        if fp.axes is None:
            shapes = {n: tuple(fp.outputs[n].shape) for n in fp.layers}
            fp.axes = layer_axes(fp.layers, shapes, dict(self.model.named_modules()))
        return fp.axes

    def _activation(self, fp: _ForwardPass, layer: str) -> Tensor:
        if layer not in fp.activations:
            raise LayerNotFoundError(
                f"layer {layer!r} was not called in the forward pass; pick a layer the model uses."
            )
        return _materialize(fp.activations, layer)

    def _class_roots(
        self, fp: _ForwardPass, seed: Seed, targets: Tensor
    ) -> tuple[list[Tensor], list[Tensor]]:
        roots, grads = [fp.logits], [seed.real]
        if seed.virtual is not None:
            node = fp.logit_node
            if node is None or not isinstance(node.rule, LinearRule):
                raise ConfigError(
                    "CLRP2 needs the model's output to be the output of a Linear/Conv layer with "
                    "an LRP rule (the logit layer); use contrast='clrp1' for this model."
                )
            if isinstance(node.rule, (Epsilon, Flat)):
                raise ConfigError(
                    f"CLRP2 is identically zero when the logit layer {node.name!r} has the "
                    f"{type(node.rule).__name__} rule: it is symmetric in the sign of the "
                    "weights, so the dual row -W_j gets the target's own map. Use "
                    "contrast='clrp1', 'sglrp' or a class, or give the logit layer z+: "
                    f"overrides={{{node.name!r}: ZPlus()}}."
                )
            roots.append(node.inp)
            grads.append(self._virtual_relevance(node, targets, seed.virtual))
        return roots, grads

    def _virtual_relevance(self, node: Node, targets: Tensor, virtual: Tensor) -> Tensor:
        """Relevance at the logit layer's input from its virtual output row ``-W_j``."""
        rule, op = node.rule, node.op
        assert isinstance(rule, LinearRule) and op is not None and node.weight is not None
        spatial = node.out.shape[2:]
        if op.is_conv and spatial.numel() != 1:
            raise ConfigError(
                "CLRP2 needs one logit per class (a Linear layer, or a Conv with 1x1 output); use "
                "contrast='clrp1' for this model."
            )
        result = torch.zeros_like(node.a)
        with torch.no_grad():
            for t in targets.unique().tolist():
                rows = (targets == t).nonzero().squeeze(1)
                weight = -node.weight[t : t + 1]
                bias = None if node.bias is None else -node.bias[t : t + 1]
                prepared = rule.prepare(weight, bias)
                a = node.a[rows]
                state = rule.state(op, a, None, prepared)
                seed = virtual[rows].reshape(-1, *([1] * (node.out.ndim - 1)))
                result[rows] = rule.relevance(op, a, state, prepared, seed)
        return result

    def _class_backprop(
        self, fp: _ForwardPass, seed: Seed, targets: Tensor, names: list[str]
    ) -> tuple[Tensor, list[Tensor]]:
        roots, grads = self._class_roots(fp, seed, targets)
        return self._backprop(fp, roots, grads, names)

    def _backprop(
        self, fp: _ForwardPass, roots: list[Tensor], grads: list[Tensor], names: list[str]
    ) -> tuple[Tensor, list[Tensor]]:
        """Relevance at the input and at ``names`` for relevance ``grads`` at ``roots``."""
        inputs = [fp.x, *(fp.outputs[n] for n in names)]
        got = torch.autograd.grad(roots, inputs, grads, retain_graph=True, allow_unused=True)
        out = [torch.zeros_like(t) if g is None else g for g, t in zip(got, inputs, strict=True)]
        return out[0].detach(), [g.detach() for g in out[1:]]

    def _batched_to_input(self, fp: _ForwardPass, root: Tensor, seeds: Tensor) -> Tensor:
        """Input relevance for each of the relevance maps ``seeds`` (G, ...) at ``root``."""
        try:
            (maps,) = torch.autograd.grad(
                [root], [fp.x], [seeds], retain_graph=True, is_grads_batched=True
            )
        except RuntimeError:  # an op the batching prototype cannot handle: one pass per map
            maps = torch.stack([self._backprop(fp, [root], [s], [])[0] for s in seeds])
        return maps.detach()

    def _normalised_contrast_at(
        self, fp: _ForwardPass, t_seed: Seed, d_seed: Seed, targets: Tensor, root: Tensor
    ) -> Tensor:
        """Contrast relevance at ``root`` with target and dual maps sum-normalised at the input."""
        parts = []
        for seed in (t_seed, d_seed):
            roots, grads = self._class_roots(fp, seed, targets)
            x_map, at = torch.autograd.grad(roots, [fp.x, root], grads, retain_graph=True)
            scale = 1.0 / x_map.flatten(1).sum(1)
            parts.append(at * scale.reshape(-1, *([1] * (at.ndim - 1))))
        return parts[0] - parts[1]

    def _output(
        self,
        fp: _ForwardPass,
        targets: Tensor,
        kinds: tuple[str, ...],
        maps: dict[str, tuple[Tensor, list[Tensor]]],
        sums: dict[str, Tensor],
        names: list[str],
    ) -> EngineOutput:
        # copies: a caller editing a result in place must not change the cached forward pass
        layers = {
            name: LayerCapture(
                activation=_materialize(fp.activations, name).clone(),
                relevance=torch.stack([maps[k][1][i] for k in kinds]),
            )
            for i, name in enumerate(names)
        }
        return EngineOutput(
            logits=fp.logits.detach().clone(),
            targets=targets,
            kinds=kinds,
            input=torch.stack([maps[k][0] for k in kinds]),
            layers=layers,
            seed_sums=torch.stack([sums[k] for k in kinds]),
            axes={n: a for n, a in self._axes(fp).items() if n in layers},
        )


def _same(a: Tensor | None, b: Tensor | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))


def _materialize(activations: dict[str, Any], name: str) -> Tensor:
    """The activation of ``name``; a layer overwritten in place is recomputed once and kept."""
    value = activations[name]
    if not isinstance(value, Tensor):  # a node: recomputed if overwritten in place
        value = activations[name] = value.output()
    return value


def _scaled(m: tuple[Tensor, list[Tensor]], scale: Tensor) -> tuple[Tensor, list[Tensor]]:
    def one(t: Tensor) -> Tensor:
        return t * scale.reshape(-1, *([1] * (t.ndim - 1)))

    return one(m[0]), [one(t) for t in m[1]]


def _difference(
    a: tuple[Tensor, list[Tensor]], b: tuple[Tensor, list[Tensor]]
) -> tuple[Tensor, list[Tensor]]:
    return a[0] - b[0], [s - t for s, t in zip(a[1], b[1], strict=True)]
