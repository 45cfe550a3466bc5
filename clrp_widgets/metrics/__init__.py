"""Evaluation metrics for relevance maps, and the runner that reproduces the paper's tables.

Every metric takes maps as numpy arrays, torch tensors or xarray DataArrays and declares its
score direction in ``higher_is_better``. ``evaluate`` (also ``cw.evaluate``) runs methods ×
metrics over a data set; ``load_imagenet_folder`` and ``load_voc07`` read real data with boxes.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    # imported on first use: the CLI (``metrics.cli``) answers --help and path errors without torch
    if name not in _EXPORTS:
        raise AttributeError(f"module 'clrp_widgets.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
