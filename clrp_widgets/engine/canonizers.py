"""Canonizers: reversible rewrites that make a model explainable layer by layer.

``batchnorm``
    A BatchNorm that directly follows a Conv/Linear layer (detected during the forward pass) is
    merged into it: the layer's rule uses ``W' = W * g / s`` and ``b' = (b - mean) * g / s + beta``,
    and the BatchNorm passes relevance. Nothing is written into the model: the merged weights live
    in the engine's cache, and the forward pass itself is unchanged.
``resnet``
    torchvision ``BasicBlock``/``Bottleneck``: the residual sum ``out + identity`` is replaced by a
    sum that splits relevance in proportion to its two inputs (zennit's ``ResNetCanonizer``). This
    is an instance-level ``forward`` override, removed on exit, also after an error.

``canonizers="auto"`` applies ``batchnorm`` when the model has BatchNorm layers and ``resnet``
when it has torchvision residual blocks.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .errors import ConfigError
from .presets import BATCH_NORMS
from .rules import stabilize

CANONIZERS = ("batchnorm", "resnet")


def resolve_canonizers(model: nn.Module, canonizers: str | Sequence[str] | None) -> frozenset[str]:
    """The set of canonizer names to apply to ``model``."""
    if canonizers is None or canonizers == "none":
        return frozenset()
    if canonizers == "auto":
        found = set()
        if any(isinstance(m, BATCH_NORMS) for m in model.modules()):
            found.add("batchnorm")
        if _residual_blocks(model):
            found.add("resnet")
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


class _ProportionalSum(torch.autograd.Function):
    """``a + b``; relevance splits as ``a / (a + b)`` and ``b / (a + b)`` (stabilised)."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(a, b)  # not the sum: an in-place ReLU may overwrite it
        ctx.eps = eps
        return a + b

    @staticmethod
    def backward(ctx, R: Tensor) -> tuple[Tensor, Tensor, None]:
        a, b = ctx.saved_tensors
        s = R / stabilize(a + b, ctx.eps)
        return a * s, b * s, None


def _basic_forward(self: Any, x: Tensor) -> Tensor:
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.relu(_ProportionalSum.apply(identity, out, self._clrp_sum_eps))


def _bottleneck_forward(self: Any, x: Tensor) -> Tensor:
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return self.relu(_ProportionalSum.apply(identity, out, self._clrp_sum_eps))


def _residual_blocks(model: nn.Module) -> list[tuple[nn.Module, object]]:
    try:
        from torchvision.models.resnet import BasicBlock, Bottleneck
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return []
    blocks: list[tuple[nn.Module, object]] = []
    for m in model.modules():
        if isinstance(m, BasicBlock):
            blocks.append((m, _basic_forward))
        elif isinstance(m, Bottleneck):
            blocks.append((m, _bottleneck_forward))
    return blocks


@contextlib.contextmanager
def residual_sums(model: nn.Module, eps: float) -> Iterator[None]:
    """Within the block, torchvision residual blocks split relevance in proportion at their sum."""
    blocks = _residual_blocks(model)
    saved = [(m, m.__dict__.get("forward", None)) for m, _ in blocks]
    try:
        for m, fn in blocks:
            m.__dict__["forward"] = types.MethodType(fn, m)  # type: ignore[arg-type]
            m.__dict__["_clrp_sum_eps"] = eps
        yield
    finally:
        for m, old in saved:
            m.__dict__.pop("_clrp_sum_eps", None)
            if old is None:
                m.__dict__.pop("forward", None)
            else:
                m.__dict__["forward"] = old
