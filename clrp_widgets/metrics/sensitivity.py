"""Class sensitivity: how alike the maps of two classes present in the same image are."""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage.metrics import structural_similarity

from clrp_widgets.engine.errors import InputError
from clrp_widgets.metrics.base import Metric
from clrp_widgets.metrics.maps import as_maps


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps over all pixels; NaN when either map is constant."""
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def _unit_range(m: np.ndarray) -> np.ndarray:
    span = m.max() - m.min()
    return (m - m.min()) / span if span > 0 else np.zeros_like(m)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two maps after min-max scaling each to [0, 1] (7 px window, or smaller maps)."""
    if min(a.shape) < 3:
        raise InputError(f"SSIM needs maps of at least 3×3 pixels; got {a.shape}.")
    win = (min(7, *a.shape) - 1) // 2 * 2 + 1
    value = structural_similarity(_unit_range(a), _unit_range(b), data_range=1.0, win_size=win)
    return float(value)


class ClassSensitivity(Metric):
    """Similarity of the maps for two different classes present in one image (lower is better).

    A class-discriminative method explains each class by its own object, so the two maps differ
    (Pearson near 0 or below); a method that is not discriminative draws the same map whatever
    the class (Pearson near 1). This is the paper's claim about LRP vs CLRP, and close in spirit
    to Quantus' RandomLogit. Pearson is NaN when a map is constant; the score averages the
    finite values.

    Parameters
    ----------
    similarity
        ``"pearson"`` or ``"ssim"``.
    """

    name = "class_sensitivity"
    unit = "pair"
    higher_is_better = False

    def __init__(self, similarity: str = "pearson"):
        if similarity not in ("pearson", "ssim"):
            raise InputError(f"similarity must be 'pearson' or 'ssim'; got {similarity!r}.")
        self.similarity = similarity

    def __call__(self, maps_a: Any, maps_b: Any) -> np.ndarray:
        """Per-pair similarity (float64, N): map i of ``maps_a`` against map i of ``maps_b``."""
        a, b = as_maps(maps_a), as_maps(maps_b)
        if a.shape != b.shape:
            raise InputError(f"the two map stacks differ in shape: {a.shape} vs {b.shape}.")
        f = pearson if self.similarity == "pearson" else ssim
        return np.array([f(x, y) for x, y in zip(a, b, strict=True)], dtype=np.float64)
