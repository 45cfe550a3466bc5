"""Evaluation metrics for relevance maps, and the runner that reproduces the paper's tables.

Every metric takes maps as numpy arrays, torch tensors or xarray DataArrays and declares its
score direction in ``higher_is_better``. ``evaluate`` (also ``cw.evaluate``) runs methods ×
metrics over a data set; ``load_imagenet_folder`` and ``load_voc07`` read real data with boxes.
"""

from __future__ import annotations

from clrp_widgets._lazy import lazy_names

_EXPORTS = {
    "Ablation": "clrp_widgets.metrics.perturbation",
    "ClassSensitivity": "clrp_widgets.metrics.sensitivity",
    "EvalData": "clrp_widgets.metrics.data",
    "Metric": "clrp_widgets.metrics.base",
    "PointingGame": "clrp_widgets.metrics.localisation",
    "RegionPerturbation": "clrp_widgets.metrics.perturbation",
    "StrictPointingGame": "clrp_widgets.metrics.localisation",
    "evaluate": "clrp_widgets.metrics.runner",
    "load_imagenet_folder": "clrp_widgets.metrics.loaders",
    "load_voc07": "clrp_widgets.metrics.loaders",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_names(__name__, _EXPORTS, __all__)
