"""A cheap fingerprint of a model's weights, for the engine's caches.

Storage pointer, version counter, dtype and device of every parameter and buffer catch a new
tensor (``p.data = ...``, ``load_state_dict`` with ``assign``) and any in-place edit autograd
sees (``with torch.no_grad(): p.mul_(2)``, optimiser steps, ``load_state_dict``). An edit made
through ``p.data`` (``p.data.mul_(2)``, ``p.data.copy_(...)``) bumps no version counter, so the
tensors' bits are also summed (as 64-bit integers, wrapping, so exact and independent of the
order of summation):

- every entry of a tensor with at most :data:`FULL_SUM_MAX` entries (all convolution kernels,
  biases and norms of torchvision's CNNs);
- every :data:`SAMPLE_STRIDE`-th entry of a larger one (VGG's 400 MB classifier, embedding
  tables), which reads a sixteenth of its memory. The stride is prime, so a 2-D weight is
  sampled in every row and every column: an edit of a whole row, column or more (pruning a unit,
  scaling, re-initialising, copying) is seen.

Limits: an edit through ``.data`` that keeps the sum (permuting entries in place), or that
changes only unsampled entries of a large tensor (fewer than ``SAMPLE_STRIDE`` scattered ones),
is not seen. Edit the parameter itself under ``torch.no_grad()`` instead: that is always seen.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

#: Tensors with at most this many entries are summed in full (2**22: 16 MiB of float32).
FULL_SUM_MAX = 1 << 22
#: Larger tensors are summed at every SAMPLE_STRIDE-th entry (prime; 1028 bytes of float32).
SAMPLE_STRIDE = 257

_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bit_sum(t: Tensor) -> Tensor:
    t = t.detach()
    if t.is_complex():
        t = torch.view_as_real(t)
    size = t.element_size()
    bits = t.reshape(-1).view(_INT_OF_SIZE[size])
    if bits.numel() > FULL_SUM_MAX:
        return bits[::SAMPLE_STRIDE].sum(dtype=torch.int64)
    if size < 8 and (bits.numel() * size) % 8 == 0 and (bits.storage_offset() * size) % 8 == 0:
        bits = bits.view(torch.int64)  # 8-byte words: a third of the time of an int32 sum
    return bits.sum(dtype=torch.int64)


def weights_fingerprint(model: nn.Module) -> tuple[Any, ...]:
    """Identity, version and bit sum of every parameter and buffer of ``model``."""
    tensors = [*model.parameters(), *model.buffers()]
    ident = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
    sums = [_bit_sum(t) for t in tensors if t.numel()]
    by_device: dict[torch.device, list[Tensor]] = {}
    for s in sums:
        by_device.setdefault(s.device, []).append(s.to(torch.int64))
    checks = tuple(tuple(torch.stack(v).tolist()) for v in by_device.values())
    return ident + checks
