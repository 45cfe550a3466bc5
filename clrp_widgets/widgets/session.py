"""``ExplainSession``: every computation the Explorer shows, cached per image of its image set.

The Explainer's engine caches the forward pass per input, so a new target, contrast or channel
costs one backward pass; this session caches what the widgets show on top of that (result trees,
decision maps, conditional and neuron maps), so a view that was seen before costs nothing.
Any computation can be stopped part-way with ``stoppable(stop)`` (``engine/interrupt.py``); this
session caches only finished results. Conditional maps are also computed in chunks.
One lock serialises every computation: the engine's hooks must never run in two threads at once
(the Explorer's worker, and e.g. an export button handled by the kernel's main thread).
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import xarray as xr

from clrp_widgets import methods
from clrp_widgets.engine.interrupt import Stopped, stoppable
from clrp_widgets.results import node_name

__all__ = ["ExplainSession", "Stopped", "View", "stoppable"]

LRP_CONTRASTS = methods.RELEVANCE
BASELINES = methods.BASELINES


@dataclass(frozen=True)
class View:
    """What the Explorer shows: one immutable snapshot per request."""

    target: int
    contrast: str
    class_b: int
    rules: str
    layer: str
    channels: tuple[int, ...] = ()
    pixel: tuple[int, int] | None = None
    neuron_mode: str = "decision"
    image: int = 0

    @property
    def panel_contrast(self) -> str:
        """The LRP-family contrast of the neuron panel (baselines have no layer decomposition)."""
        return self.contrast if self.contrast in LRP_CONTRASTS else "clrp1"

    @property
    def kind(self) -> str:
        """The tree kind shown: ``"target"`` for plain LRP, else the unclipped ``"contrast"``."""
        return "target" if self.panel_contrast == "lrp" else "contrast"

    def engine_contrast(self) -> str | int:
        """The contrast argument of the Explainer: class B's index for "pairwise"."""
        return self.class_b if self.panel_contrast == "pairwise" else self.panel_contrast

    def decision(self) -> View:
        """The part of the view that decides the neuron panel's tree."""
        return replace(self, channels=(), pixel=None, neuron_mode="decision")


class _Cache:
    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[Hashable, Any] = OrderedDict()

    def put(self, key: Hashable, value: Any) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = make()
        self.put(key, value)
        return value


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: ExplainSession, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper


class ExplainSession:
    """Cached explanations of images ``xs`` (each (1, C, H, W)), one Explainer per rules preset.

    ``make_explainer(rules)`` builds an Explainer on first use (in the Explorer's worker, so the
    widget displays before a big model is ready). ``xs`` may grow (uploads): append to it.
    """

    CHUNK = 4  # conditional maps per backward pass between two checks for a newer request

    def __init__(
        self,
        make_explainer: Callable[[str], Any],
        xs: list[torch.Tensor],
        explainers: dict[str, Any] | None = None,
    ) -> None:
        self._make = make_explainer
        self.xs = xs
        self._explainers: dict[str, Any] = dict(explainers or {})
        self.lock = threading.RLock()
        self._trees = _Cache(12)
        self._maps = _Cache(512)
        self.backward_calls = 0

    @_locked
    def explainer(self, rules: str) -> Any:
        """The Explainer for a rules preset (built once)."""
        if rules not in self._explainers:
            self._explainers[rules] = self._make(rules)
        return self._explainers[rules]

    @property
    def x(self) -> torch.Tensor:
        """The first image (the Explorer of one image)."""
        return self.xs[0]

    @_locked
    def probs(self, rules: str, image: int = 0) -> np.ndarray:
        """Class probabilities (C,) of image ``image``."""
        key = ("probs", rules, image)
        return self._maps.get(key, lambda: self.explainer(rules).predict(self.xs[image]).values[0])

    def cached_probs(self, rules: str, image: int) -> np.ndarray | None:
        """The probabilities if already computed (never computes)."""
        return self._maps.items.get(("probs", rules, image))

    @staticmethod
    def _tree_key(view: View) -> tuple[Any, ...]:
        return (view.image, view.rules, view.target, view.engine_contrast(), view.layer)

    def tree_cached(self, view: View) -> bool:
        """Whether the view's tree is at hand (never computes)."""
        return self._tree_key(view) in self._trees.items

    @_locked
    def tree(self, view: View) -> xr.DataTree:
        """The result tree of the view's target and panel contrast, capturing the view's layer."""
        key = self._tree_key(view)

        def make() -> xr.DataTree:
            self.backward_calls += 1
            return self.explainer(view.rules).explain(
                self.xs[view.image],
                view.target,
                contrast=view.engine_contrast(),
                layers=[view.layer],
            )

        return self._trees.get(key, make)

    @_locked
    def decision_map(self, view: View) -> np.ndarray:
        """The (H, W) map of the header's contrast: LRP-family from the tree, or a baseline."""
        if view.contrast in LRP_CONTRASTS:
            if view.kind == "target" or self.tree_cached(view):
                return self.tree(view)["input"]["heatmap"].sel(kind=view.kind).values[0]
            return self._maps.get(("contrast", *self._tree_key(view)), lambda: self._contrast(view))
        key = ("baseline", view.image, view.rules, view.target, view.contrast)

        def make() -> np.ndarray:
            self.backward_calls += 1
            ex = self.explainer(view.rules)
            return np.asarray(
                ex.baseline(self.xs[view.image], view.target, view.contrast).values[0]
            )

        return self._maps.get(key, make)

    def _contrast(self, view: View) -> np.ndarray:
        """The contrast map alone: one pass, which the engine reuses for the view's tree."""
        self.backward_calls += 1
        tree = self.explainer(view.rules).explain(
            self.xs[view.image],
            view.target,
            contrast=view.engine_contrast(),
            kinds=["contrast"],
            layers=[view.layer],  # the tree's layers: the engine keeps this pass for it
        )
        return np.asarray(tree["input"]["heatmap"].sel(kind="contrast").values[0])

    @_locked
    def layer(self, view: View) -> xr.Dataset:
        """The view's layer node (relevance, activation, neuron_relevance) for sample 0."""
        node = self.tree(view)["layers"][node_name(view.layer)]
        return node.to_dataset().isel(sample=0)

    def n_channels(self, view: View) -> int:
        """Channels (or units) of the view's layer (computes the view's tree if needed)."""
        rel = self.layer(view)["neuron_relevance"]
        return int(rel.sizes[next(d for d in rel.dims if d != "kind")])

    def conditional(
        self, view: View, channels: Sequence[int], stop: Callable[[], bool] | None = None
    ) -> dict[int, np.ndarray] | None:
        """Conditional (H, W) maps of ``channels`` at the view's layer.

        Missing maps are computed ``CHUNK`` channels per backward pass; between chunks the lock
        is released and ``stop()`` is asked, so a newer request can take over (returns None).
        """
        base = (
            "conditional",
            view.image,
            view.rules,
            view.target,
            view.engine_contrast(),
            view.layer,
        )
        missing = [c for c in dict.fromkeys(channels) if (*base, c) not in self._maps.items]
        for start in range(0, len(missing), self.CHUNK):
            if stop is not None and stop():
                return None
            chunk = missing[start : start + self.CHUNK]
            with self.lock:
                self.backward_calls += 1
                ex = self.explainer(view.rules)
                arr = ex.conditional(
                    self.xs[view.image],
                    view.target,
                    view.layer,
                    chunk,
                    contrast=view.engine_contrast(),
                )
                for c, m in zip(chunk, np.asarray(arr.isel(sample=0).values), strict=True):
                    self._maps.put((*base, c), m)
        with self.lock:
            return {c: self._maps.get((*base, c), lambda: None) for c in channels}

    @_locked
    def neuron(self, view: View, channel: int) -> np.ndarray:
        """The paper's neuron explanation: ``channel`` against the rest of its layer."""
        key = ("neuron", view.image, view.rules, view.layer, channel)

        def make() -> np.ndarray:
            self.backward_calls += 1
            tree = self.explainer(view.rules).neuron(
                self.xs[view.image], view.layer, channel, contrast="layer", layers=None
            )
            heat = tree["input"]["heatmap"]
            kind = "contrast" if "contrast" in heat["kind"].values else "target"
            return heat.sel(kind=kind).values[0]

        return self._maps.get(key, make)

    @_locked
    def channel_maps(self, view: View) -> list[np.ndarray]:
        """The maps of the selected channels, as the neuron panel's mode asks."""
        if view.neuron_mode == "neuron":
            return [self.neuron(view, c) for c in view.channels]
        maps = self.conditional(view, view.channels)
        assert maps is not None  # no stop: always complete
        return [maps[c] for c in view.channels]
