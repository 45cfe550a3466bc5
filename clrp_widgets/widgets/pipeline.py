"""The Explorer's pipeline: compute what a view needs and publish it part by part (a part
composed into ``Explorer``).

It runs in the Explorer's worker (``runner.py``): it reads the session (which caches every
computation) and what the screen already shows, and writes nothing itself. Every change the
user sees goes through ``job.publish`` into a drawing method of the :class:`Screen`, which runs
only while the job is the newest request. The order is the one a user waits in: the model and
the prediction, the decision map, the neuron bars, the selected neurons' maps, the neuron atlas
(when there is one), then the thumbnails.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from clrp_widgets.engine.errors import ConfigError
from clrp_widgets.widgets.runner import Job
from clrp_widgets.widgets.session import ExplainSession, View, stoppable
from clrp_widgets.widgets.sources import default_layer
from clrp_widgets.widgets.state import check_choice

THUMBNAILS = 12


class Screen(Protocol):
    """What the pipeline reads from the Explorer, and the drawing steps it publishes into
    (private to the two: the Explorer's public API is its traits and methods)."""

    layer_names: list[str]
    class_names: list[str]
    target: int
    class_b: int
    atlas: Any

    def _has_classes(self) -> bool: ...
    def _n_units(self, layer: str) -> int | None: ...
    def _shows(self, part: str, key: Any) -> bool: ...
    def _show_stage(self, stage: str, done: float) -> None: ...
    def _adopt_layers(self, explainer: Any) -> None: ...
    def _adopt_class_names(self, names: list[str]) -> None: ...
    def _adopt_classes(self) -> None: ...
    def _adopt_defaults(self, target: int, class_b: int, layer: str) -> None: ...
    def _set_units(self, layer: str, n_units: int) -> None: ...
    def _show_prediction(self, image: int, probs: np.ndarray) -> None: ...
    def _show_header(self, view: View, main: np.ndarray) -> None: ...
    def _show_main(
        self, view: View, main: np.ndarray, layer: Any, chan_maps: list | None = None
    ) -> None: ...
    def _show_thumbs(
        self, view: View, top: list[int], maps: dict[int, np.ndarray], layer: Any
    ) -> None: ...


class Pipeline:
    """Computes a view with a session and publishes it onto a screen.

    Parameters
    ----------
    session : ExplainSession
        The Explorer's cached computations.
    screen : Screen
        The Explorer.
    layer : str, optional
        The layer asked for at construction (default: the model's last convolution).
    """

    def __init__(self, session: ExplainSession, screen: Screen, layer: str | None) -> None:
        self.session, self.screen, self.asked_layer = session, screen, layer

    def run(self, view: View, job: Job) -> None:
        """Compute what ``view`` needs, stopping part-way as soon as a newer request arrives."""
        with stoppable(lambda: not job.current()):
            self._compute(view, job)

    def _stage(self, job: Job, stage: str, done: float) -> None:
        job.publish(lambda: self.screen._show_stage(stage, done))

    def _prepare(self, view: View, job: Job) -> View:
        """Build the model's Explainer, predict the image and resolve the view's defaults."""
        s, screen = self.session, self.screen
        if not screen.layer_names:
            self._stage(job, "preparing the model", 0.05)
        ex = s.explainer(view.rules)
        if s.cached_probs(view.rules, view.image) is None:
            self._stage(job, "predicting", 0.15)
        probs = s.probs(view.rules, view.image)
        if not screen.layer_names:  # after the forward pass: op-level layers are known by then
            job.publish(lambda: screen._adopt_layers(ex))
        if not screen.class_names:
            numbered = [f"class {i}" for i in range(len(probs))]
            job.publish(lambda: screen._adopt_class_names(numbered))
        if not screen._has_classes():
            job.publish(screen._adopt_classes)
            view = replace(view, target=screen.target, class_b=screen.class_b)
        ranked = [int(c) for c in np.argsort(-probs, kind="stable")]
        target = view.target if view.target >= 0 else ranked[0]
        class_b = view.class_b
        if class_b < 0 or class_b == target:
            class_b = next(c for c in ranked if c != target)
        layer = view.layer or self.asked_layer or default_layer(ex)
        check_choice(layer, screen.layer_names, "layer")
        resolved = replace(view, target=target, class_b=class_b, layer=layer)
        if resolved != view:
            job.publish(lambda: screen._adopt_defaults(target, class_b, layer))
        job.publish(lambda: screen._show_prediction(resolved.image, probs))
        return resolved

    def _known_channels(self, view: View) -> bool:
        """Whether the view's channels are known to exist (before its layer's tree is made)."""
        n_units = self.screen._n_units(view.layer)
        return not view.channels or (
            n_units is not None and all(0 <= c < n_units for c in view.channels)
        )

    def _compute(self, view: View, job: Job) -> None:
        """Compute what ``view`` needs (cached parts are free), publishing each part if current."""
        s, screen = self.session, self.screen
        view = self._prepare(view, job)
        if not job.current():
            return
        self._stage(job, "main map", 0.3)
        main = s.decision_map(view)
        if not s.tree_cached(view) and self._known_channels(view):  # show the map first
            job.publish(lambda: screen._show_header(view, main))
            if not job.current():
                return
            self._stage(job, "neuron bars", 0.4)
        layer = s.layer(view)
        n_units = s.n_channels(view)
        job.publish(lambda: screen._set_units(view.layer, n_units))
        bad = [c for c in view.channels if not 0 <= c < n_units]
        if bad:
            raise ConfigError(
                f"channel {bad[0]} is out of range for layer {view.layer}; use 0..{n_units - 1}"
            )
        if not view.channels:
            job.publish(lambda: screen._show_main(view, main, layer, []))
        else:
            job.publish(lambda: screen._show_main(view, main, layer))
            if not job.current():
                return
            self._stage(job, "neuron maps", 0.5)
            chan_maps = s.channel_maps(view)
            job.publish(lambda: screen._show_main(view, main, layer, chan_maps))
        if screen.atlas is not None and job.current():
            self._atlas(view, job)
        strength = layer["neuron_relevance"].sel(kind=view.kind).values
        top = [int(c) for c in np.argsort(-strength, kind="stable")[:THUMBNAILS] if strength[c] > 0]
        if not job.current() or screen._shows("thumbs", (view.decision(), tuple(top))):
            return
        self._stage(job, f"thumbnails of {len(top)} channels", 0.7)
        maps = s.conditional(view, top, stop=lambda: not job.current())
        if maps is not None:
            job.publish(lambda: screen._show_thumbs(view, top, maps, layer))

    def _atlas(self, view: View, job: Job) -> None:
        """The neuron atlas follows the selection: the last selected channel, or none."""
        atlas = self.screen.atlas
        channel = view.channels[-1] if view.channels else None
        contrast = view.class_b if view.contrast == "pairwise" else view.contrast
        content = atlas.content_for(
            self.session.xs[view.image], view.layer, channel, view.target, contrast
        )
        if content is not None:
            job.publish(lambda: atlas.show(content))
