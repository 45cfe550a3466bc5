"""Generated multi-object scenes with known object classes, boxes and masks.

``scenes(n, seed)`` draws ``n`` RGB images, each holding 2–3 non-overlapping objects of distinct
shape classes on a varied background (flat, gradient or striped, with noise). Everything is
vectorised with numpy, so 10,000 scenes of 64×64 take a few seconds, and the result is fully
determined by ``seed`` (and the other arguments).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from clrp_widgets.engine.errors import InputError

CLASS_NAMES: tuple[str, ...] = (
    "disk",
    "square",
    "triangle",
    "cross",
    "ring",
    "bar",
    "star",
    "diamond",
)
CORNERS = ("y0", "x0", "y1", "x1")
_MIN_SIZE, _MAX_SIZE = 16, 512
_GAP = 2  # free pixels kept between the squares that hold two objects


@dataclass(frozen=True)
class Scenes:
    """A batch of generated scenes; unpacks as ``images, labels, boxes = scenes(...)``.

    Attributes
    ----------
    images : xarray.DataArray
        ``(sample, color, y, x)`` float32 in [0, 1]; ``color`` is ``["r", "g", "b"]``.
    labels : xarray.DataArray
        ``(sample, class)`` multi-hot float32 (1.0 where the class is present); coordinate
        ``class_name`` along ``class``.
    boxes : xarray.DataArray
        ``(sample, object, corner)`` int64 with ``corner = ["y0", "x0", "y1", "x1"]``: the tight
        box of each object's mask; ``y1``/``x1`` are exclusive, so ``image[..., y0:y1, x0:x1]``
        is the object. Rows of absent objects are -1. Coordinate ``object_class`` along
        ``(sample, object)``.
    object_class : xarray.DataArray
        ``(sample, object)`` int64 class index of each object, -1 where a scene has fewer objects.
    masks : xarray.DataArray
        ``(sample, object, y, x)`` bool pixel mask of each object (all False for absent ones).
    class_names : tuple of str
        The shape classes, in class-index order.
    """

    images: xr.DataArray
    labels: xr.DataArray
    boxes: xr.DataArray
    object_class: xr.DataArray
    masks: xr.DataArray
    class_names: tuple[str, ...] = CLASS_NAMES

    def __iter__(self) -> Iterator[xr.DataArray]:
        return iter((self.images, self.labels, self.boxes))

    def __len__(self) -> int:
        return int(self.images.sizes["sample"])

    def __getitem__(self, index: int | slice | list[int] | np.ndarray) -> Scenes:
        """Select samples by position; an int keeps the sample axis (length 1)."""
        if isinstance(index, (int, np.integer)):
            index = [int(index) % len(self)]
        sel = {"sample": index}
        return Scenes(
            images=self.images.isel(sel),
            labels=self.labels.isel(sel),
            boxes=self.boxes.isel(sel),
            object_class=self.object_class.isel(sel),
            masks=self.masks.isel(sel),
            class_names=self.class_names,
        )

    def tensor(self) -> torch.Tensor:
        """The images as a float32 torch tensor ``(n, 3, H, W)`` in [0, 1]."""
        return torch.from_numpy(np.ascontiguousarray(self.images.values))

    def label_tensor(self) -> torch.Tensor:
        """The multi-hot labels as a float32 torch tensor ``(n, n_classes)``."""
        return torch.from_numpy(np.ascontiguousarray(self.labels.values))


def scenes(
    n: int,
    seed: int = 0,
    size: int = 64,
    *,
    min_objects: int = 2,
    max_objects: int = 3,
) -> Scenes:
    """Generate ``n`` multi-object scenes.

    Parameters
    ----------
    n : int
        Number of scenes.
    seed : int
        Seed of the random generator; equal arguments give identical scenes.
    size : int
        Height and width in pixels (16 to 512; the shipped model expects 64).
    min_objects, max_objects : int
        Range of the number of objects per scene (1 to 4); objects have distinct classes.

    Returns
    -------
    Scenes
        Unpacks as ``images, labels, boxes``; also has ``.object_class``, ``.masks``,
        ``.class_names``, ``len()``, slicing and ``.tensor()``.

    Examples
    --------
    >>> images, labels, boxes = scenes(4, seed=1)
    >>> images.shape
    (4, 3, 64, 64)
    """
    _check(n, size, min_objects, max_objects)
    rng = np.random.default_rng(seed)
    n_cls = len(CLASS_NAMES)
    count = rng.integers(min_objects, max_objects + 1, size=n)
    classes = np.argsort(rng.random((n, n_cls)), axis=1)[:, :max_objects]
    present = np.arange(max_objects)[None, :] < count[:, None]
    side = rng.integers(round(0.25 * size), round(0.42 * size) + 1, size=(n, max_objects))
    top, left, side, present = _place(rng, size, side, present)
    classes = np.where(present, classes, -1)

    background, base_colors = _backgrounds(rng, n, size)
    colors = _object_colors(rng, base_colors, max_objects)
    patches = _render_patches(rng, classes, side)
    images, masks = _compose(background, patches, colors, classes, top, left)
    _add_noise(rng, images)
    boxes = _tight_boxes(masks)
    return _to_scenes(images, masks, classes, boxes)


def _check(n: int, size: int, min_objects: int, max_objects: int) -> None:
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise InputError(f"n must be a non-negative int, got {n!r}; pass e.g. scenes(16).")
    if not _MIN_SIZE <= size <= _MAX_SIZE:
        raise InputError(f"size must be in [{_MIN_SIZE}, {_MAX_SIZE}], got {size}; use e.g. 64.")
    if not 1 <= min_objects <= max_objects <= 4:
        raise InputError(
            f"need 1 <= min_objects <= max_objects <= 4, got {min_objects}, {max_objects}; "
            "the default is 2 to 3 objects."
        )


def _place(
    rng: np.random.Generator, size: int, side: np.ndarray, present: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw non-overlapping square slots; shrink (then drop, beyond the second) if none fits."""
    slots = side.shape[1]
    top = np.zeros_like(side)
    left = np.zeros_like(side)
    smallest = max(6, round(0.18 * size))
    for k in range(slots):
        todo = present[:, k].copy()
        for attempt in range(60):
            if not todo.any():
                break
            if attempt and attempt % 10 == 0:
                side[todo, k] = np.maximum(smallest, (side[todo, k] * 0.85).astype(side.dtype))
            idx = np.flatnonzero(todo)
            s = side[idx, k]
            top[idx, k] = (rng.random(idx.size) * (size - s + 1)).astype(top.dtype)
            left[idx, k] = (rng.random(idx.size) * (size - s + 1)).astype(left.dtype)
            clash = np.zeros(idx.size, dtype=bool)
            for j in range(k):
                other = present[idx, j]
                clash |= other & _overlap(top, left, side, idx, k, j)
            todo[idx[~clash]] = False
        present[todo, k] = False  # only possible for a third or fourth object
    return top, left, side, present


def _overlap(
    top: np.ndarray, left: np.ndarray, side: np.ndarray, idx: np.ndarray, a: int, b: int
) -> np.ndarray:
    ya, xa, sa = top[idx, a], left[idx, a], side[idx, a]
    yb, xb, sb = top[idx, b], left[idx, b], side[idx, b]
    apart_y = (ya >= yb + sb + _GAP) | (yb >= ya + sa + _GAP)
    apart_x = (xa >= xb + sb + _GAP) | (xb >= xa + sa + _GAP)
    return ~(apart_y | apart_x)


def _backgrounds(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat, linear-gradient or striped backgrounds; returns images and their two end colours."""
    c0 = rng.random((n, 3), dtype=np.float32)
    c1 = np.clip(c0 + rng.uniform(-0.3, 0.3, (n, 3)).astype(np.float32), 0, 1)
    kind = rng.integers(0, 3, size=n)  # 0 flat, 1 gradient, 2 stripes
    angle = rng.uniform(0, np.pi, n).astype(np.float32)
    freq = rng.uniform(3, 8, n).astype(np.float32)
    image = np.empty((n, 3, size, size), dtype=np.float32)
    image[:] = c0[:, :, None, None]
    ramped = np.flatnonzero(kind > 0)
    if ramped.size:
        grid = (np.arange(size, dtype=np.float32) + 0.5) / size
        cos, sin = np.cos(angle[ramped]), np.sin(angle[ramped])
        low = np.minimum(cos * grid[0], cos * grid[-1]) + sin * grid[0]
        high = np.maximum(cos * grid[0], cos * grid[-1]) + sin * grid[-1]
        ramp = cos[:, None, None] * grid[None, :, None] + sin[:, None, None] * grid[None, None, :]
        ramp = (ramp - low[:, None, None]) / (high - low)[:, None, None]
        striped = kind[ramped] == 2
        wave = 2 * np.pi * freq[ramped][striped, None, None] * ramp[striped]
        ramp[striped] = 0.5 + 0.5 * np.sin(wave)
        image[ramped] += (c1 - c0)[ramped][:, :, None, None] * ramp[:, None]
    return image, np.stack([c0, c1], axis=1)


def _object_colors(rng: np.random.Generator, base: np.ndarray, slots: int) -> np.ndarray:
    """Colours far from both background end colours (the best of 16 random candidates)."""
    n = base.shape[0]
    cand = rng.random((n, slots, 16, 3), dtype=np.float32)
    dist = np.linalg.norm(cand[:, :, :, None, :] - base[:, None, None, :, :], axis=-1).min(-1)
    good = dist >= 0.5
    pick = np.where(good.any(-1), good.argmax(-1), dist.argmax(-1))
    return np.take_along_axis(cand, pick[:, :, None, None], axis=2)[:, :, 0]


def _render_patches(rng: np.random.Generator, classes: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Masks ``(n, slots, P, P)`` of each object drawn in its own square slot of side ``side``."""
    n, slots = classes.shape
    p = int(side.max()) if side.size else 1
    pix = np.arange(p, dtype=np.float32) + 0.5
    scale = side.astype(np.float32)[..., None] / 2
    coord = pix / scale - 1.0  # (n, slots, p); |coord| <= 1 inside the object's square
    v = coord[..., :, None]
    u = coord[..., None, :]
    flip = rng.random((n, slots)) < 0.5  # bars: vertical instead of horizontal
    out = np.zeros((n, slots, p, p), dtype=bool)
    for c, draw in enumerate(_SHAPES):
        sel = classes == c
        if sel.any():
            uu, vv = u[sel], v[sel]
            if c == CLASS_NAMES.index("bar"):
                f = flip[sel][:, None, None]
                uu, vv = np.where(f, vv, uu), np.where(f, uu, vv)
            out[sel] = draw(np.broadcast_to(uu, (uu.shape[0], p, p)), vv)
    return out


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Five-pointed star with one point up (outer radius 0.97, inner 0.42)."""
    r = np.hypot(u, v)
    phi = np.mod(np.arctan2(u, -v), 2 * np.pi / 5)
    phi = np.minimum(phi, 2 * np.pi / 5 - phi)  # angle from the nearest point, in [0, pi/5]
    outer, inner = 0.97, 0.42
    p2 = (inner * np.cos(np.pi / 5), inner * np.sin(np.pi / 5))
    dx, dy = p2[0] - outer, p2[1]
    edge = (outer * dy) / (np.cos(phi) * dy - np.sin(phi) * dx)
    return r <= edge


_SHAPES = (
    lambda u, v: u**2 + v**2 <= 0.95**2,  # disk
    lambda u, v: (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8),  # square
    lambda u, v: (v <= 0.85) & (np.abs(u) <= 0.97 * (v + 0.95) / 1.8),  # triangle
    lambda u, v: (
        ((np.abs(u) <= 0.3) | (np.abs(v) <= 0.3))  # cross
        & (np.maximum(np.abs(u), np.abs(v)) <= 0.97)
    ),
    lambda u, v: (u**2 + v**2 <= 0.97**2) & (u**2 + v**2 >= 0.55**2),  # ring
    lambda u, v: (np.abs(u) <= 0.97) & (np.abs(v) <= 0.3),  # bar
    _star,
    lambda u, v: np.abs(u) + np.abs(v) <= 0.97,  # diamond
)


def _compose(
    background: np.ndarray,
    patches: np.ndarray,
    colors: np.ndarray,
    classes: np.ndarray,
    top: np.ndarray,
    left: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Paint each object's patch into its scene; returns images and full-size masks."""
    n, _, size, _ = background.shape
    slots, p = patches.shape[1], patches.shape[2]
    images = background
    masks = np.zeros((n, slots, size, size), dtype=bool)
    for i, k in zip(*np.nonzero(classes >= 0), strict=True):
        y, x = top[i, k], left[i, k]
        h, w = min(p, size - y), min(p, size - x)
        patch = patches[i, k, :h, :w]
        masks[i, k, y : y + h, x : x + w] = patch
        region = images[i, :, y : y + h, x : x + w]
        region[:, patch] = colors[i, k][:, None]
    return images, masks


def _add_noise(rng: np.random.Generator, images: np.ndarray) -> None:
    """Add uniform noise of a per-scene amplitude (up to ±0.08) in place; clip to [0, 1]."""
    amplitude = rng.uniform(0.0, 0.08, size=(images.shape[0], 1, 1, 1)).astype(np.float32)
    noise = rng.integers(0, 256, size=images.shape, dtype=np.uint8).astype(np.float32)
    noise -= 127.5
    noise *= amplitude / 127.5
    images += noise
    np.clip(images, 0.0, 1.0, out=images)


def _tight_boxes(masks: np.ndarray) -> np.ndarray:
    """``(n, slots, 4)`` boxes ``(y0, x0, y1, x1)``, exclusive ends, -1 for empty masks."""
    rows = np.any(masks, axis=3, keepdims=False)
    cols = np.any(masks, axis=2, keepdims=False)
    size_y, size_x = rows.shape[-1], cols.shape[-1]
    y0 = rows.argmax(-1)
    y1 = size_y - rows[..., ::-1].argmax(-1)
    x0 = cols.argmax(-1)
    x1 = size_x - cols[..., ::-1].argmax(-1)
    boxes = np.stack([y0, x0, y1, x1], axis=-1).astype(np.int64)
    boxes[~rows.any(-1)] = -1
    return boxes


def _to_scenes(
    images: np.ndarray, masks: np.ndarray, classes: np.ndarray, boxes: np.ndarray
) -> Scenes:
    n, slots = classes.shape
    size = images.shape[-1]
    labels = np.zeros((n, len(CLASS_NAMES)), dtype=np.float32)
    rows, cols = np.nonzero(classes >= 0)
    labels[rows, classes[rows, cols]] = 1.0
    sample = np.arange(n)
    obj = np.arange(slots)
    pix = np.arange(size)
    object_class = xr.DataArray(
        classes.astype(np.int64),
        dims=("sample", "object"),
        coords={"sample": sample, "object": obj},
    )
    return Scenes(
        images=xr.DataArray(
            images,
            dims=("sample", "color", "y", "x"),
            coords={"sample": sample, "color": ["r", "g", "b"], "y": pix, "x": pix},
            name="images",
        ),
        labels=xr.DataArray(
            labels,
            dims=("sample", "class"),
            coords={
                "sample": sample,
                "class": np.arange(len(CLASS_NAMES)),
                "class_name": ("class", list(CLASS_NAMES)),
            },
            name="labels",
        ),
        boxes=xr.DataArray(
            boxes,
            dims=("sample", "object", "corner"),
            coords={
                "sample": sample,
                "object": obj,
                "corner": list(CORNERS),
                "object_class": object_class,
            },
            name="boxes",
        ),
        object_class=object_class.rename("object_class"),
        masks=xr.DataArray(
            masks,
            dims=("sample", "object", "y", "x"),
            coords={"sample": sample, "object": obj, "y": pix, "x": pix},
            name="masks",
        ),
    )
