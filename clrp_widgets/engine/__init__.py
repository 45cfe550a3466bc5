"""LRP/CLRP relevance engine (torch only; knows nothing of xarray or widgets)."""

from .core import EngineOutput, LayerCapture, RelevanceEngine
from .presets import PAPER_BOUNDS, PRESETS
from .rules import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
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
    "EngineOutput",
    "Epsilon",
    "Flat",
    "Gamma",
    "Gradient",
    "LayerCapture",
    "Norm",
    "Pass",
    "RelevanceEngine",
    "Rule",
    "WSquare",
    "ZBox",
    "ZPlus",
]
