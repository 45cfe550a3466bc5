"""The z+ rule's z- fallback at a few outputs, from their receptive fields alone.

Where z+ is undefined (no positive contribution) at an output with relevance, :class:`~.rules.ZPlus`
splits that relevance over the output's negative contributions. Computed densely this costs two
more forward and two more transposed passes over the whole layer, although such outputs are
typically a fraction of a percent of a layer (EfficientNet's depthwise layers after SiLU: 0.01–1%).
Here only their receptive fields are gathered: ``P`` outputs cost ``P x (C_in / groups) x kernel``
products, and the result is added into the z+ relevance by index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .ops import LinearOp

#: The sparse path is taken when at most this share of a layer's outputs need the fallback (a
#: fraction of the measured break-even on CPU: a full 3x3 convolution 0.15%, a 1x1 0.4%, a
#: depthwise 3x3 3%, where oneDNN's dense passes are least efficient) ...
MAX_SHARE = {"conv": 1 / 1024, "depthwise": 1 / 64, "linear": 1 / 16}
#: ... and their receptive fields hold at most this many entries in all (larger: dense passes).
MAX_FIELD_ENTRIES = 1 << 21


@dataclass(frozen=True)
class SparseFallback:
    """The fallback's part of the relevance, by flat index.

    ``outputs``: flat indices of the outputs that take the fallback (their z+ quotient is void);
    ``inputs``, ``values``: flat input indices and the relevance each receives from them.
    """

    outputs: Tensor
    inputs: Tensor
    values: Tensor


def sparse_eligible(op: LinearOp, a: Tensor, weight: Tensor, count: int, total: int) -> bool:
    """Whether ``count`` candidate outputs of ``total`` take the sparse path (CPU, few of them)."""
    kind = "linear" if not op.is_conv else "depthwise" if weight.shape[1] == 1 else "conv"
    if a.device.type != "cpu" or count > total * MAX_SHARE[kind]:
        return False
    return count * weight[0].numel() <= MAX_FIELD_ENTRIES


def sparse_fallback(
    op: LinearOp, a: Tensor, wp: Tensor, wn: Tensor, R: Tensor, candidates: Tensor, eps: float
) -> SparseFallback:
    """The z rule over the negative contributions at the ``candidates`` outputs (a mask like R).

    A candidate (z+ undefined, ``R != 0``) takes the fallback where its negative contributions
    ``a+ w- + a- w+`` sum below ``-eps``; the others keep no relevance, as in the dense rule.
    """
    flat_out = candidates.reshape(-1).nonzero().squeeze(1)
    inputs, valid, weights = _fields(op, a.shape, R.shape, flat_out, wp.shape)
    vals = torch.where(valid, a.reshape(-1)[inputs], 0.0)  # zero padding (clamped indices)
    neg = vals.clamp(min=0) * wn.reshape(-1)[weights] + vals.clamp(max=0) * wp.reshape(-1)[weights]
    zn = neg.sum(1)
    keep = zn < -eps
    share = R.reshape(-1)[flat_out][keep] / zn[keep]
    contrib = neg[keep] * share[:, None]
    taken = valid[keep]
    return SparseFallback(flat_out[keep], inputs[keep][taken], contrib[taken])


def _fields(
    op: LinearOp, in_shape: torch.Size, out_shape: torch.Size, flat_out: Tensor, w_shape: torch.Size
) -> tuple[Tensor, Tensor, Tensor]:
    """Flat input indices, validity (zero padding) and flat weight indices, each ``(P, field)``."""
    if not op.is_conv:  # (..., C_in) -> (..., C_out): every input of the row
        c_in, c_out = in_shape[-1], out_shape[-1]
        row, col = flat_out // c_out, flat_out % c_out
        span = torch.arange(c_in, device=flat_out.device)
        inputs = row[:, None] * c_in + span
        return inputs, torch.ones_like(inputs, dtype=torch.bool), col[:, None] * c_in + span
    c_out, c_group, kernel = w_shape[0], w_shape[1], tuple(w_shape[2:])
    spatial_in = tuple(in_shape[2:])
    coords = _unravel(flat_out, tuple(out_shape))  # n, c, o_1 .. o_d
    n, c = coords[0], coords[1]
    taps = torch.cartesian_prod(*(torch.arange(k, device=flat_out.device) for k in kernel))
    taps = taps.reshape(-1, len(kernel))  # (K, d), also for d = 1
    valid = torch.ones(len(flat_out), taps.shape[0], dtype=torch.bool, device=flat_out.device)
    spatial = torch.zeros(len(flat_out), taps.shape[0], dtype=torch.long, device=flat_out.device)
    for t in range(len(kernel)):
        pos = coords[2 + t][:, None] * op.stride[t] - op.padding[t] + taps[:, t] * op.dilation[t]
        valid &= (pos >= 0) & (pos < spatial_in[t])
        spatial = spatial * spatial_in[t] + pos.clamp(0, spatial_in[t] - 1)
    channels = (c // (c_out // op.groups))[:, None] * c_group + torch.arange(
        c_group, device=flat_out.device
    )  # (P, C_in / groups)
    size_in = math.prod(spatial_in)
    inputs = (n[:, None, None] * in_shape[1] + channels[:, :, None]) * size_in + spatial[:, None]
    k = taps.shape[0]
    weights = c[:, None, None] * c_group + torch.arange(c_group, device=flat_out.device)[:, None]
    weights = weights * k + torch.arange(k, device=flat_out.device)
    shape = (len(flat_out), c_group * k)
    return (
        inputs.reshape(shape),
        valid[:, None, :].expand(-1, c_group, -1).reshape(shape),
        weights.reshape(shape),
    )


def _unravel(flat: Tensor, shape: tuple[int, ...]) -> list[Tensor]:
    """Coordinates of flat indices into a contiguous tensor of ``shape``."""
    coords = []
    for size in reversed(shape):
        coords.append(flat % size)
        flat = flat // size
    return coords[::-1]
