"""Evaluation metrics for relevance maps, and the runner that reproduces the paper's tables.

Every metric takes maps as numpy arrays, torch tensors or xarray DataArrays and declares its
score direction in ``higher_is_better``.
"""

from clrp_widgets.metrics.base import Metric
from clrp_widgets.metrics.localisation import PointingGame, StrictPointingGame
from clrp_widgets.metrics.perturbation import Ablation, RegionPerturbation
from clrp_widgets.metrics.sensitivity import ClassSensitivity

__all__ = [
    "Ablation",
    "ClassSensitivity",
    "Metric",
    "PointingGame",
    "RegionPerturbation",
    "StrictPointingGame",
]
