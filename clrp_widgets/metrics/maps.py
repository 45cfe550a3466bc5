"""Normalising what the metrics accept: maps, boxes and targets as plain numpy arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from clrp_widgets.engine.errors import InputError

#: Pointing-game tolerance of the original protocol (Zhang et al.): 15 px on a 224 px image.
TOLERANCE_AT_224 = 15.0


def as_maps(maps: Any) -> np.ndarray:
    """Return relevance maps as a float64 array (N, H, W).

    Parameters
    ----------
    maps
        numpy array, torch tensor or xarray DataArray shaped (H, W), (N, H, W) or (N, C, H, W).
        A colour axis (4-D input) is summed, as the DESIGN's ``heatmap``.
    """
    if hasattr(maps, "dims") and hasattr(maps, "values"):  # xarray.DataArray
        if "color" in maps.dims:
            maps = maps.sum("color")
        maps = maps.values
    if hasattr(maps, "detach"):  # torch.Tensor
        maps = maps.detach().cpu().numpy()
    arr = np.asarray(maps, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 4:
        arr = arr.sum(axis=1)
    if arr.ndim != 3:
        raise InputError(
            f"relevance maps must be (H, W), (N, H, W) or (N, C, H, W); got shape {arr.shape}. "
            "Pass one map per image, e.g. the DataTree's `/input/heatmap` for one kind."
        )
    if not np.isfinite(arr).all():
        raise InputError("relevance maps contain NaN or inf; recompute them from a finite input.")
    return arr


def as_regions(boxes: Any, n: int) -> list[np.ndarray]:
    """Return one (k, 4) int array of (y0, x0, y1, x1) boxes per map (y1, x1 exclusive).

    ``boxes`` is (4,), (N, 4), or a length-N sequence of (k, 4) arrays: a class present several
    times in an image owns the union of its k boxes.
    """
    if hasattr(boxes, "dims") and hasattr(boxes, "values"):
        boxes = boxes.values
    if isinstance(boxes, np.ndarray) or hasattr(boxes, "detach"):
        arr = np.asarray(boxes.detach().cpu() if hasattr(boxes, "detach") else boxes)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim == 2:
            regions = [arr[i : i + 1] for i in range(len(arr))]
        elif arr.ndim == 3:
            regions = list(arr)
        else:
            raise InputError(f"boxes must be (N, 4) or (N, k, 4); got shape {arr.shape}.")
    else:
        regions = [np.asarray(b).reshape(-1, 4) for b in boxes]
    if len(regions) != n:
        raise InputError(f"got {len(regions)} box sets for {n} maps; give one box (set) per map.")
    out = []
    for r in regions:
        r = np.asarray(r, dtype=np.int64).reshape(-1, 4)
        r = r[(r[:, 2] > r[:, 0]) & (r[:, 3] > r[:, 1])]  # padding rows (e.g. -1) drop out
        out.append(r)
    return out


def tolerance_px(shape: tuple[int, int], tolerance: float | None) -> tuple[float, float]:
    """Tolerance in pixels along (y, x): the given value, or 15 px at 224 px scaled to ``shape``."""
    if tolerance is not None:
        if tolerance < 0:
            raise InputError(f"tolerance must be >= 0 pixels; got {tolerance}.")
        return float(tolerance), float(tolerance)
    return TOLERANCE_AT_224 * shape[0] / 224.0, TOLERANCE_AT_224 * shape[1] / 224.0


def region_mask(region: np.ndarray, shape: tuple[int, int], tol: tuple[float, float]) -> np.ndarray:
    """Boolean (H, W) mask of the union of boxes, each enlarged by ``tol`` pixels on every side.

    A pixel (y, x) is inside an enlarged box when its distance to the box along each axis is at
    most the tolerance (a rectangle grown by ``tol``; the box's last row is ``y1 - 1``).
    """
    ys = np.arange(shape[0])[:, None]
    xs = np.arange(shape[1])[None, :]
    mask = np.zeros(shape, dtype=bool)
    for y0, x0, y1, x1 in region:
        dy = np.maximum(np.maximum(y0 - ys, ys - (y1 - 1)), 0)
        dx = np.maximum(np.maximum(x0 - xs, xs - (x1 - 1)), 0)
        mask |= (dy <= tol[0]) & (dx <= tol[1])
    return mask


def peak_mask(m: np.ndarray) -> np.ndarray:
    """Boolean mask of the pixels that attain the map's maximum (several on exact ties)."""
    return m == m.max()


def peak_index(m: np.ndarray) -> tuple[int, int]:
    """(y, x) of the maximum; on exact ties the tied pixel nearest to the ties' centroid.

    This is deterministic and, unlike numpy's first-in-raster-order arg-max, not biased towards
    the top-left corner (an all-zero map points at the image centre).
    """
    ys, xs = np.nonzero(peak_mask(m))
    if len(ys) == 1:
        return int(ys[0]), int(xs[0])
    d = (ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2
    i = int(np.argmin(d))
    return int(ys[i]), int(xs[i])


def as_targets(targets: Any, n: int) -> np.ndarray:
    """Targets as an int64 array (N,), broadcasting a single int."""
    if hasattr(targets, "detach"):
        targets = targets.detach().cpu().numpy()
    arr = np.asarray(targets, dtype=np.int64).reshape(-1)
    if arr.size == 1 and n != 1:
        arr = np.full(n, int(arr[0]), dtype=np.int64)
    if arr.size != n:
        raise InputError(f"got {arr.size} targets for {n} images; give one target per image.")
    return arr


def nanmean(values: Sequence[float] | np.ndarray) -> float:
    """Mean over the finite values (NaN where there are none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")
