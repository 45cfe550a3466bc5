"""Per-model engine memo of the functional API (``cw.lrp`` / ``cw.clrp``).

Building a :class:`~clrp_widgets.engine.core.RelevanceEngine` means checking every layer and, on
the first forward pass, computing every modified weight (W+, W-, BatchNorm-merged ...): on VGG16
that is most of a gradient's cost again. The memo keeps one engine per model and configuration
(rules, input bounds, canonizers, overrides), so a loop of ``cw.clrp`` calls costs what a kept
engine costs.

- Weak: the registry holds models weakly and a memo engine holds its model weakly too, so the
  memo never keeps a model (or its engines' modified weights) alive.
- Fresh: the engine recomputes its modified weights when any parameter or buffer changes (see
  :mod:`~clrp_widgets.engine.fingerprint`).
- Light: the engines keep no denominators and their forward pass is dropped after each call, so a
  call still needs about a gradient's memory, and nothing input-sized stays alive between calls.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from .core import RelevanceEngine
from .outputs import OutputSelector
from .presets import Bound
from .rules import Rule

T = TypeVar("T")
_ENGINES: weakref.WeakKeyDictionary[nn.Module, dict[Hashable, RelevanceEngine]] = (
    weakref.WeakKeyDictionary()
)
_REGISTRY_LOCK = threading.Lock()


class _WeakModelEngine(RelevanceEngine):
    """A one-shot engine that refers to its model weakly (the memo must not keep it alive)."""

    @property
    def model(self) -> nn.Module:
        model = self._model_ref()
        if model is None:  # pragma: no cover - the memo drops the engine with its model
            raise ReferenceError("the model of this memo engine was garbage-collected")
        return model

    @model.setter
    def model(self, model: nn.Module) -> None:
        self._model_ref = weakref.ref(model)


def _config_key(
    rules: str | Mapping[Any, Rule],
    input_bounds: tuple[Bound, Bound] | None,
    canonizers: str | Sequence[str] | None,
    overrides: Mapping[Any, Rule] | None,
    output: OutputSelector = None,
) -> Hashable | None:
    """A hashable key of the configuration, or None if it has none (then no memo is used)."""
    try:
        rules_key: Hashable = rules if isinstance(rules, str) else tuple(rules.items())
        overrides_key: Hashable = None if overrides is None else tuple(overrides.items())
        bounds_key: Hashable = None
        if input_bounds is not None:
            tensors = [torch.as_tensor(b, dtype=torch.float64) for b in input_bounds]
            bounds_key = tuple((tuple(t.shape), tuple(t.flatten().tolist())) for t in tensors)
        canon_key: Hashable = (
            canonizers if canonizers is None or isinstance(canonizers, str) else tuple(canonizers)
        )
        key = (rules_key, bounds_key, canon_key, overrides_key, output)
        hash(key)
    except (TypeError, ValueError, RuntimeError, AttributeError):
        return None
    return key


def memo_engine(
    model: nn.Module,
    rules: str | Mapping[Any, Rule],
    input_bounds: tuple[Bound, Bound] | None,
    canonizers: str | Sequence[str] | None,
    overrides: Mapping[Any, Rule] | None = None,
    output: OutputSelector = None,
) -> RelevanceEngine:
    """The memo's one-shot engine for ``model`` and this configuration (built on first use).

    A model without submodules (its engine would refer to it through its own leaves) and a
    configuration that is not hashable (e.g. custom unhashable rules) get a fresh engine.
    """
    key = _config_key(rules, input_bounds, canonizers, overrides, output)
    if key is None or not isinstance(model, nn.Module) or not any(model.children()):
        return RelevanceEngine(
            model,
            rules,
            input_bounds,
            canonizers,
            keep_denominators=False,
            overrides=overrides,
            output=output,
        )
    with _REGISTRY_LOCK:
        engines = _ENGINES.setdefault(model, {})
        engine = engines.get(key)
    if engine is None:
        engine = _WeakModelEngine(
            model,
            rules,
            input_bounds,
            canonizers,
            keep_denominators=False,
            overrides=overrides,
            output=output,
        )
        with _REGISTRY_LOCK:
            engine = engines.setdefault(key, engine)
    return engine


def one_shot(engine: RelevanceEngine, call: Callable[[RelevanceEngine], T]) -> T:
    """``call(engine)`` under the model's lock, then drop the forward pass it cached."""
    with engine._lock:
        try:
            return call(engine)
        finally:
            engine.clear_cache()
