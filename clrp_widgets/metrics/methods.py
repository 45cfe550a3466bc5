"""The explanation methods the runner compares, each reduced to one (H, W) map per image.

| method | map |
|---|---|
| ``lrp`` | ``cw.lrp`` relevance summed over colour (DESIGN's ``heatmap``) |
| ``clrp1``, ``clrp2``, ``sglrp`` | ``cw.clrp`` (clipped at 0) summed over colour |
| ``gradient``, ``deconvnet``, ``guided_backprop`` | max over colour of the absolute value |
|   | (the usual saliency map of Simonyan et al.) |
| ``gradient_x_input`` | summed over colour |
| ``gradcam`` | Grad-CAM at the last conv layer, bilinearly upsampled |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from clrp_widgets.engine.errors import ConfigError
from clrp_widgets.metrics.names import METHODS, RELEVANCE_METHODS

MapFn = Callable[..., torch.Tensor]


def _relevance(method: str) -> MapFn:
    def run(
        model: nn.Module, x: torch.Tensor, t: torch.Tensor, bounds: Any, **rules: Any
    ) -> torch.Tensor:
        from clrp_widgets.functional import clrp, lrp

        if method == "lrp":
            r = lrp(model, x, t, input_bounds=bounds, **rules)
        else:
            r = clrp(model, x, t, variant=method, input_bounds=bounds, **rules)
        return r.sum(dim=1)

    return run


def _baseline(method: str) -> MapFn:
    def run(
        model: nn.Module, x: torch.Tensor, t: torch.Tensor, bounds: Any, **rules: Any
    ) -> torch.Tensor:
        from clrp_widgets.engine.baselines import baseline

        r = baseline(model, x, t, method)
        if method == "gradcam":
            return r
        if method == "gradient_x_input":
            return r.sum(dim=1)
        return r.abs().amax(dim=1)

    return run


def method_maps(
    method: str,
    model: nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    input_bounds: Any,
    rules: Any = "paper",
    overrides: Any = None,
) -> np.ndarray:
    """Maps (N, H, W) float32 of ``method`` for images ``x`` and one target per image.

    ``rules`` and ``overrides`` (as in ``cw.lrp``) apply to the relevance methods only.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose from {', '.join(METHODS)}.")
    fn = _relevance(method) if method in RELEVANCE_METHODS else _baseline(method)
    maps = fn(model, x, targets, input_bounds, rules=rules, overrides=overrides)
    return maps.detach().float().cpu().numpy()
