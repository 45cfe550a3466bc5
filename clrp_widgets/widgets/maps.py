"""Numpy helpers of the Explorer: display image, channel ranking, comparisons and PNG rendering."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clrp_widgets.results import decode_attrs

_COLORMAPS = json.loads((Path(__file__).resolve().parent / "colormaps.json").read_text())


def display_image(x: np.ndarray, bounds: tuple[Any, Any] | None = None) -> np.ndarray:
    """(C, H, W) model input -> (H, W, 3) uint8 for display.

    With input bounds (low, high), scalars or per channel, the input is mapped back to [0, 1] by
    (x - low) / (high - low), which undoes the usual mean/std normalisation when the bounds are the
    normalised range's true minimum and maximum; otherwise each channel is min-max scaled.
    """
    x = np.asarray(x, dtype=np.float64)
    c = x.shape[0]
    if bounds is not None:
        low, high = (np.asarray(b, dtype=np.float64).reshape(-1) for b in bounds)
        low, high = np.broadcast_to(low, (c,)), np.broadcast_to(high, (c,))
    else:
        low, high = x.reshape(c, -1).min(1), x.reshape(c, -1).max(1)
    span = np.where(high > low, high - low, 1.0)
    img = (x - low[:, None, None]) / span[:, None, None]
    if c == 1:
        img = np.repeat(img, 3, axis=0)
    img = img[:3].transpose(1, 2, 0)
    return np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)


def downsample(a: np.ndarray, max_size: int) -> np.ndarray:
    """Block-average the last two axes so that neither exceeds ``max_size`` (crops a remainder)."""
    h, w = a.shape[-2:]
    f = max(1, -(-max(h, w) // max_size))
    if f == 1:
        return a
    h2, w2 = h // f, w // f
    a = a[..., : h2 * f, : w2 * f]
    return a.reshape(*a.shape[:-2], h2, f, w2, f).mean(axis=(-3, -1)).astype(a.dtype)


def top_channels(contrast: np.ndarray, n: int = 20) -> np.ndarray:
    """Indices of the ``n`` most positive and ``n`` most negative channels, by descending value.

    Channels that are neither (when there are more than 2n) are left out; with at most 2n channels
    every channel is shown. Only strictly positive values count as "most positive" and strictly
    negative ones as "most negative": a zero channel is never shown as a top one.
    """
    order = np.argsort(-contrast, kind="stable")
    if len(order) <= 2 * n:
        return order
    top = order[:n][contrast[order[:n]] > 0]
    bottom = [i for i in order[::-1][:n] if contrast[i] < 0][::-1]
    return np.concatenate([top, np.asarray(bottom, dtype=order.dtype)])


def neurons_at(
    relevance: np.ndarray, y: int, x: int, size: tuple[int, int], k: int = 10, radius: int = 1
):
    """The ``k`` channels with the most relevance around input pixel (y, x) of an image of ``size``.

    ``relevance`` is a layer's (channel, h, w) relevance. The pixel maps to the layer cell that
    covers it, (y * h // H, x * w // W); a channel's value is its relevance summed over the cells
    within ``radius`` of that one (a unit's receptive field spans its neighbours' too).
    Returns (channels, values), strongest first.
    """
    _, h, w = relevance.shape
    cy, cx = y * h // size[0], x * w // size[1]
    window = relevance[
        :, max(cy - radius, 0) : cy + radius + 1, max(cx - radius, 0) : cx + radius + 1
    ]
    values = window.sum(axis=(1, 2))
    order = np.argsort(-values, kind="stable")[:k]
    return order, values[order]


def compare(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Pearson correlation of two maps and the overlap of their positive parts.

    overlap = Σ min(a⁺, b⁺) / Σ max(a⁺, b⁺) (weighted Jaccard: 1 for identical positive parts,
    0 when they never meet), with a⁺ = max(a, 0) after scaling each map to a unit maximum.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    sa, sb = a.std(), b.std()
    corr = float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb)) if sa > 0 and sb > 0 else 0.0
    pa, pb = np.clip(a, 0, None), np.clip(b, 0, None)
    pa = pa / pa.max() if pa.max() > 0 else pa
    pb = pb / pb.max() if pb.max() > 0 else pb
    union = np.maximum(pa, pb).sum()
    overlap = float(np.minimum(pa, pb).sum() / union) if union > 0 else 0.0
    return {"correlation": corr, "overlap": overlap}


def _lut(name: str) -> np.ndarray:
    pts = np.asarray(_COLORMAPS[name], dtype=np.float64)
    t = np.arange(256) / 255
    return np.round(np.stack([np.interp(t, pts[:, 0], pts[:, c]) for c in (1, 2, 3)], 1))


def render_rgb(
    relevance: np.ndarray,
    image: np.ndarray | None,
    mode: str = "positive",
    opacity: float = 0.8,
) -> np.ndarray:
    """The widget's overlay as (H, W, 3) uint8 (the same colour maps and blending as the JS).

    The image underlay is its luminance halfway to white, so that the map's colours stand out.
    """
    m = np.nan_to_num(np.asarray(relevance, dtype=np.float64))
    v = m if mode == "signed" else np.clip(m, 0, None)
    scale = np.abs(v).max() or 1.0
    n = np.clip(v / scale, -1, 1)
    t = (n + 1) / 2 if mode == "signed" else n
    colour = _lut("diverging" if mode == "signed" else "sequential")[np.round(t * 255).astype(int)]
    if image is None:
        return colour.astype(np.uint8)
    grey = 127.5 + 0.5 * (np.asarray(image, np.float64) @ np.array([0.299, 0.587, 0.114]))
    alpha = (opacity * np.sqrt(np.abs(n)))[..., None]
    return np.round(grey[..., None] * (1 - alpha) + colour * alpha).astype(np.uint8)


def side_by_side(panels: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Join (H, W, 3) panels horizontally with a white gap."""
    h = max(p.shape[0] for p in panels)
    parts = []
    for i, p in enumerate(panels):
        if i:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
        parts.append(np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0)), constant_values=255))
    return np.concatenate(parts, axis=1)


def patch_grid(layer: Any, kind: str) -> tuple[np.ndarray, np.ndarray] | None:
    """A token layer's relevance on its patch grid: ``(grid (C, gy, gx), extra (C, k))``.

    ``layer`` is one sample's layer node (``relevance`` (kind, channel, ...) and the
    ``patch_grid`` attr of the result tree); attention maps ``(channel, query, key)`` are summed
    over the queries (each key token's relevance), other axes besides the tokens are summed.
    ``extra`` holds the tokens before the grid (the class token). None without a patch grid.
    """
    grid = decode_attrs(dict(layer.attrs)).get("patch_grid")
    rel = layer["relevance"].sel(kind=kind)
    tokens = next((d for d in ("token", "key") if d in rel.dims), None)
    if not grid or tokens is None:
        return None
    gy, gx = (int(g) for g in grid)
    others = [d for d in rel.dims if d not in ("channel", tokens)]
    values = rel.sum(others).transpose("channel", tokens).values
    extra = values.shape[1] - gy * gx
    return values[:, extra:].reshape(-1, gy, gx), values[:, :extra]


def to_image(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (gy, gx) map shown at an image's (H, W): each cell covers its patch (nearest)."""
    gy, gx = grid.shape
    rows = np.arange(size[0]) * gy // size[0]
    cols = np.arange(size[1]) * gx // size[1]
    return grid[rows][:, cols]
