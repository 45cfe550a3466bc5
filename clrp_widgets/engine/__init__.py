"""LRP/CLRP relevance engine (torch only; knows nothing of xarray or widgets)."""

from .attention import ProductRule
from .core import EngineOutput, LayerCapture, RelevanceEngine
from .errors import ConservationWarning
from .presets import PAPER_BOUNDS, PRESETS
from .rules import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Gate,
    Gradient,
    Norm,
    Pass,
    Rule,
    WSquare,
    ZBox,
    ZPlus,
)
from .seeds import CONTRASTS

__all__ = [
    "CONTRASTS",
    "PAPER_BOUNDS",
    "PRESETS",
    "AlphaBeta",
    "ConservationWarning",
    "EngineOutput",
    "Epsilon",
    "Flat",
    "Gamma",
    "Gate",
    "Gradient",
    "LayerCapture",
    "Norm",
    "Pass",
    "ProductRule",
    "RelevanceEngine",
    "Rule",
    "WSquare",
    "ZBox",
    "ZPlus",
]
