"""Localisation metrics: the pointing game and the SGLRP authors' strict variant."""

from __future__ import annotations

from typing import Any

import numpy as np

from clrp_widgets.engine.errors import InputError
from clrp_widgets.metrics.base import Metric
from clrp_widgets.metrics.maps import (
    as_maps,
    as_regions,
    nanmean,
    peak_mask,
    region_mask,
    tolerance_px,
)


class PointingGame(Metric):
    """Hit when the map's arg-max lies in the object's box enlarged by a tolerance.

    Score = hits / (hits + misses). On exact ties of the maximum (e.g. a map that is zero
    everywhere) the value is the fraction of tied pixels inside the box: the expected hit under
    uniformly random tie-breaking, so a constant map scores the chance level, not a free hit.

    Parameters
    ----------
    tolerance
        Pixels the box grows by on each side. None: 15 px at 224 px, scaled to the map size
        along each axis (about 4.3 px on a 64 px map).
    per_class
        Average the hit rate per class first, then over classes (Zhang et al.'s mean accuracy).
    """

    name = "pointing_game"
    higher_is_better = True

    def __init__(self, tolerance: float | None = None, per_class: bool = False):
        self.tolerance = tolerance
        self.per_class = per_class

    def _inputs(
        self, maps: Any, boxes: Any
    ) -> tuple[np.ndarray, list[np.ndarray], tuple[float, float]]:
        """Maps (N, H, W), each map's box regions, and the tolerance in pixels for this size."""
        m = as_maps(maps)
        return m, as_regions(boxes, len(m)), tolerance_px(m.shape[1:], self.tolerance)

    def __call__(self, maps: Any, boxes: Any) -> np.ndarray:
        """Per-map hit values in [0, 1] (1 hit, 0 miss; NaN where the map has no box)."""
        m, regions, tol = self._inputs(maps, boxes)
        out = np.full(len(m), np.nan)
        for i, (mi, region) in enumerate(zip(m, regions, strict=True)):
            if len(region):
                peaks = peak_mask(mi)
                out[i] = (peaks & region_mask(region, mi.shape, tol)).sum() / peaks.sum()
        return out

    def score(self, maps: Any, boxes: Any, classes: Any = None) -> float:
        """The aggregate score of :meth:`__call__` (per class first if ``per_class``)."""
        values = self(maps, boxes)
        return self.aggregate(values, None if classes is None else np.asarray(classes))

    def aggregate(self, values: np.ndarray, classes: np.ndarray | None = None) -> float:
        """Hit rate, or with ``per_class`` the mean over classes of each class's hit rate."""
        if not self.per_class:
            return nanmean(values)
        if classes is None:
            raise InputError("per_class=True needs the class of each map: pass classes=[...].")
        rates = [nanmean(values[classes == c]) for c in np.unique(classes)]
        return nanmean(rates)


class StrictPointingGame(PointingGame):
    """Strict pointing game (Iwana et al., SGLRP): every salient pixel must be in the box.

    The map is divided by its maximum and binarised at ``threshold``. A hit needs at least one
    salient pixel and none outside the (tolerance-enlarged) box. A map whose maximum is not
    positive has no salient pixel and counts as a miss.

    Parameters
    ----------
    threshold
        Fraction of the map's maximum above which (inclusive) a pixel is salient.
    tolerance
        As :class:`PointingGame`; the default 0 px is the strict protocol. None scales 15 px/224.
    per_class
        As :class:`PointingGame`.
    """

    name = "strict_pointing_game"

    def __init__(
        self, threshold: float = 0.5, tolerance: float | None = 0.0, per_class: bool = False
    ):
        if not 0.0 < threshold <= 1.0:
            raise InputError(f"threshold must be in (0, 1]; got {threshold}.")
        super().__init__(tolerance=tolerance, per_class=per_class)
        self.threshold = threshold

    def __call__(self, maps: Any, boxes: Any) -> np.ndarray:
        """Per-map hits (1.0 or 0.0; NaN where the map has no box)."""
        m, regions, tol = self._inputs(maps, boxes)
        out = np.full(len(m), np.nan)
        for i, (mi, region) in enumerate(zip(m, regions, strict=True)):
            if not len(region):
                continue
            top = mi.max()
            if top <= 0:
                out[i] = 0.0
                continue
            salient = mi / top >= self.threshold
            outside = salient & ~region_mask(region, mi.shape, tol)
            out[i] = float(salient.any() and not outside.any())
        return out
