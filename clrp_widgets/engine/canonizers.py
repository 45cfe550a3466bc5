"""Canonizers: reversible rewrites that make a model explainable layer by layer.

``batchnorm``
    A BatchNorm that directly follows a Conv/Linear layer (detected during the forward pass) is
    merged into it: the layer's rule uses ``W' = W * g / s`` and ``b' = (b - mean) * g / s + beta``,
    and the BatchNorm passes relevance. Nothing is written into the model: the merged weights live
    in the engine's cache, and the forward pass itself is unchanged.
``resnet``
    Kept as an accepted name only. Residual sums of every model (torchvision's ``out += identity``
    as well as a user's ``F.relu(out + skip)``) are split in proportion to their two inputs by the
    op-level rule for sums of two input-dependent tensors (:mod:`.opmode`), which equals zennit's
    ``ResNetCanonizer``; no ``forward`` is overridden any more.

``canonizers="auto"`` applies ``batchnorm`` when the model has BatchNorm layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .errors import ConfigError
from .presets import BATCH_NORMS

CANONIZERS = ("batchnorm", "resnet")


def resolve_canonizers(model: nn.Module, canonizers: str | Sequence[str] | None) -> frozenset[str]:
    """The set of canonizer names to apply to ``model``."""
    if canonizers is None or canonizers == "none":
        return frozenset()
    if canonizers == "auto":
        found = set()
        if any(isinstance(m, BATCH_NORMS) for m in model.modules()):
            found.add("batchnorm")
        return frozenset(found)
    names = [canonizers] if isinstance(canonizers, str) else list(canonizers)
    unknown = [n for n in names if n not in CANONIZERS]
    if unknown:
        raise ConfigError(
            f"unknown canonizer(s) {unknown}; use 'auto', None, or a subset of {list(CANONIZERS)}."
        )
    return frozenset(names)


def merge_batchnorm(weight: Tensor, bias: Tensor | None, bn: Any) -> tuple[Tensor, Tensor] | None:
    """Weight and bias of ``layer -> bn`` as one layer, or None if ``bn`` has no running stats."""
    mean, var = bn.running_mean, bn.running_var
    if not isinstance(mean, Tensor) or not isinstance(var, Tensor):
        return None
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = bn.weight * scale
    shift = (bias if bias is not None else torch.zeros_like(mean)) - mean
    new_bias = shift * scale + (bn.bias if bn.bias is not None else 0.0)
    new_weight = weight * scale.reshape(-1, *([1] * (weight.ndim - 1)))
    return new_weight.detach(), new_bias.detach()
