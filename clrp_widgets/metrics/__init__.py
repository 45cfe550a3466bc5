"""Evaluation metrics for relevance maps, and the runner that reproduces the paper's tables.

Every metric takes maps as numpy arrays, torch tensors or xarray DataArrays and declares its
score direction in ``higher_is_better``. ``evaluate`` (also ``cw.evaluate``) runs methods ×
metrics over a data set; ``load_imagenet_folder`` and ``load_voc07`` read real data with boxes.
"""

from clrp_widgets.metrics.base import Metric
from clrp_widgets.metrics.data import EvalData
from clrp_widgets.metrics.loaders import load_imagenet_folder, load_voc07
from clrp_widgets.metrics.localisation import PointingGame, StrictPointingGame
from clrp_widgets.metrics.perturbation import Ablation, RegionPerturbation
from clrp_widgets.metrics.runner import evaluate
from clrp_widgets.metrics.sensitivity import ClassSensitivity

__all__ = [
    "Ablation",
    "ClassSensitivity",
    "EvalData",
    "Metric",
    "PointingGame",
    "RegionPerturbation",
    "StrictPointingGame",
    "evaluate",
    "load_imagenet_folder",
    "load_voc07",
]
