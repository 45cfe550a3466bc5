"""Input bounds that travel with the data to the first layer, for the z^B rule.

z^B needs the lowest and highest possible value of every input of the first Conv/Linear layer.
When the model transforms its input before that layer (``F.pad`` / ``ZeroPad2d``, a
``Conv2dSame`` padding in its ``forward``, a space-to-depth, an in-model normalisation
``(x - mean) / std``, an eval-mode BatchNorm), the bounds of the model input no longer describe
the layer's input: padded zeros, for instance, are constants, not inputs in ``[low, high]``.

The recorder therefore applies each such operation to the bounds too, until the first layer:

- operations that move or select values (the ``route`` kind: views, ``pad``, ``cat``, max
  pooling, space-to-depth) map the lower bound to the lower bound and the upper to the upper;
  a constant fill (padding) gets ``low = high = fill``, so z^B gives it no relevance;
- element-wise affine maps with constants (``x * s + t``, ``x / s``, ``c - x``, a BatchNorm in
  eval mode) map both bounds and then take the element-wise minimum and maximum, which is exact
  for any sign of the scale.

Any other operation on the way drops the bounds, and the first layer then warns that it uses
the ``input_bounds`` as given (:func:`untraced_warning`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

Bounds = tuple[Tensor, Tensor]


def of_input(low: float | Tensor, high: float | Tensor, x: Tensor) -> Bounds:
    """``(low, high)`` broadcast to the whole batch ``x`` (scalars or per-channel ``(C,)``)."""
    from .rules import expand_bound

    return tuple(  # type: ignore[return-value]
        expand_bound(b, x).expand(x.shape).contiguous() for b in (low, high)
    )


def through(op: Callable[..., Tensor], lows: list[Tensor], highs: list[Tensor]) -> Bounds | None:
    """Bounds of ``op(*signals)`` from the signals' bounds (None if ``op`` gives no tensor)."""
    with torch.no_grad():
        low, high = op(*lows), op(*highs)
    if not isinstance(low, Tensor) or not isinstance(high, Tensor) or low.shape != high.shape:
        return None
    return torch.minimum(low, high), torch.maximum(low, high)


def untraced_warning(layer: str, stacklevel: int = 2) -> None:
    """The first layer's input is not the model input and its bounds were lost on the way."""
    warnings.warn(
        f"the first layer {layer!r} does not read the model input directly, and the operations "
        "before it do not map input bounds (only moves, padding, space-to-depth and affine maps "
        "with constants do), so its z^B rule assumes input_bounds for the values it reads. "
        "Pass input_bounds=(low, high) that hold for that layer's input, or give it another "
        f"rule: overrides={{{layer!r}: Flat()}}.",
        UserWarning,
        stacklevel=stacklevel,
    )
