"""Contrastive Layer-wise Relevance Propagation (CLRP) for CNNs, with Jupyter widgets.

The public API (see ``DESIGN.md`` §2) is imported lazily, so ``import clrp_widgets`` stays fast
and the engine never pulls in widget or dask code.
"""

from __future__ import annotations

from clrp_widgets._lazy import lazy_names

__version__ = "0.1.0"

_EXPORTS = {
    "lrp": "clrp_widgets.functional",
    "clrp": "clrp_widgets.functional",
    "Explainer": "clrp_widgets.explainer",
    "CLRPError": "clrp_widgets.engine.errors",
    "ConservationWarning": "clrp_widgets.engine.errors",
    "ModelBundle": "clrp_widgets.models.bundle",
    "load_model": "clrp_widgets.models.loaders",
    "scenes": "clrp_widgets.models.scenes",
    "sample_image": "clrp_widgets.models.photos",
    "evaluate": "clrp_widgets.metrics.runner",
    "Explorer": "clrp_widgets.widgets.explorer",
    "demo": "clrp_widgets.widgets.explorer",
    "scale": "clrp_widgets.scale",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


__getattr__, __dir__ = lazy_names(__name__, _EXPORTS, __all__)
