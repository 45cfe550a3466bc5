"""Neuron atlas from a store: a channel's reference samples, and their conditional maps.

``reference_samples`` ranks a store's samples for one neuron (layer, channel) by contrastive
relevance, relevance or activation: an exact top-k, computed lazily with dask block by block
(each block of store chunks keeps its own top-k candidates; the merged candidates hold the
global top-k).
``reference_maps`` then explains those references again, conditioned on the neuron, in one
batched pass, and crops each map to where the neuron's conditional relevance lies.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr

from clrp_widgets.engine.errors import ConfigError, InputError, LayerNotFoundError
from clrp_widgets.scale import store as zstore
from clrp_widgets.scale.data import SampleTable, sample_table

RANKINGS = ("contrast", "relevance", "activation")
CROP_THRESHOLD = 0.1  # crop to where the conditional map reaches this fraction of its maximum
BLOCK = 4096  # samples per dask block of a query (whole store chunks)
CACHE_BYTES = 64 * 2**20  # a layer's (sample, channel) slice up to this size is kept in memory
MAX_SLICES = 6  # slices kept (layer x ranking), oldest dropped first


def reference_samples(
    store: str | os.PathLike,
    layer: str,
    channel: int,
    *,
    by: str = "contrast",
    method: str | int = "clrp1",
    target: int | str | None = None,
    k: int = 8,
) -> xr.Dataset:
    """The ``k`` samples of a store where a neuron scores highest (Relevance Maximization).

    Parameters
    ----------
    store : str or pathlib.Path
        A store written by :func:`explain_dataset` (format 2, with activation summaries).
    layer : str
        A layer of the store (``attrs["layers"]``).
    channel : int
        A channel (or unit) of ``layer``.
    by : {"contrast", "relevance", "activation"}
        ``"contrast"``: the neuron's contrastive relevance (target − dual, unclipped) for the
        sample's class rather than the others; ``"relevance"``: its relevance for the class
        (kind ``"target"``); ``"activation"``: the maximum of its activation over space
        (Activation Maximization).
    method : str or int
        The store's contrast to rank by (a method of the run, e.g. ``"clrp1"``; an int k is
        ``"rather_than_<k>"``). Ignored for ``by="activation"``.
    target : int or str, optional
        Rank only samples that explain this class (index or class name).
    k : int
        How many references (fewer when fewer samples qualify).

    Returns
    -------
    xarray.Dataset
        Dimension ``rank`` (0 = best): ``sample``, ``image`` (row of the data's images),
        ``target`` (the explained class) and ``score``, sorted by score descending, ties by
        sample index. Attrs: ``store``, ``layer``, ``channel``, ``by``, ``method``, ``k`` and
        ``candidates`` (samples ranked). Only complete chunks count.

    Examples
    --------
    >>> refs = cw.scale.reference_samples("shapes.zarr", "features.11", 5, target="disk")
    >>> refs.sample.values, refs.score.values  # doctest: +SKIP
    """
    if by not in RANKINGS:
        raise ConfigError(f"by must be one of {', '.join(RANKINGS)}; got {by!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive int (references to return); got {k!r}")
    path = zstore.local_path(store)
    if zstore.is_new(path):
        raise InputError(f"no store at {str(path)!r}; write one with cw.scale.explain_dataset")
    meta = _Meta.read(path)
    layer = _layer(meta.layers, layer)
    if by == "activation":
        array, where = meta.group[f"layers/{layer}/activation_max"], ()
        label = None
    else:
        label = _method(meta.methods, method)
        kind = zstore.KINDS.index("contrast" if by == "contrast" else "target")
        array = meta.group[f"layers/{layer}/neuron_relevance"]
        where = (meta.methods.index(label), kind)
    channel = _channel(int(array.shape[-1]), layer, channel)
    complete = meta.complete()
    targets = meta.target
    keep = complete.copy()
    if target is not None:
        keep &= targets == _class(meta.class_names, target)
    if array.shape[-2] * array.shape[-1] * array.dtype.itemsize <= CACHE_BYTES:
        # a store chunk holds every channel, so reading one channel's column costs what reading
        # the layer's (sample, channel) slice costs: keep that slice for the next neurons
        values = _kept_slice(meta, array, where, complete)
        found: Any = [_chunk_top(values[:, channel], keep, 0, int(k))]
    else:  # lazy: dask blocks of whole store chunks (BLOCK samples), each one zarr call
        step = meta.chunk * max(1, BLOCK // meta.chunk)
        lazy = da.from_zarr(array, chunks=(*array.shape[:-2], step, array.shape[-1]))
        column = lazy[(*where, slice(None), channel)]
        starts = np.cumsum((0, *column.chunks[0]))
        blocks = column.to_delayed().ravel()
        parts = [
            dask.delayed(_chunk_top)(block, keep[a:b], a, int(k))
            for block, a, b in zip(blocks, starts[:-1], starts[1:], strict=True)
        ]
        found = dask.compute(*parts, scheduler="synchronous")  # a block's chunks: one read
    score = np.concatenate([f[0] for f in found]) if found else np.zeros(0, np.float32)
    sample = np.concatenate([f[1] for f in found]) if found else np.zeros(0, np.int64)
    order = np.lexsort((sample, -score.astype(np.float64)))[: int(k)]
    sample, score = sample[order], score[order]
    return xr.Dataset(
        {
            "sample": ("rank", sample.astype(np.int64)),
            "image": ("rank", meta.image[sample].astype(np.int64)),
            "target": ("rank", targets[sample].astype(np.int64)),
            "score": ("rank", score.astype(np.float32)),
        },
        coords={"rank": np.arange(len(sample))},
        attrs={
            "store": str(path),
            "layer": layer,
            "channel": int(channel),
            "by": by,
            "method": label or "",
            "k": int(k),
            "candidates": int(keep.sum()),
        },
    )


def _kept_slice(meta: _Meta, array: zarr.Array, where: tuple, complete: np.ndarray) -> np.ndarray:
    """``array[where]`` as (sample, channel), read once per store, layer, ranking and set of
    complete chunks (a run that completes more chunks makes it read again)."""
    key = (meta.key, array.path, where, np.packbits(complete).tobytes())
    values = _SLICES.get(key)
    if values is None:
        values = np.asarray(array[(*where, slice(None), slice(None))])
        if len(_SLICES) >= MAX_SLICES:
            _SLICES.pop(next(iter(_SLICES)))
        _SLICES[key] = values
    return values


def _chunk_top(block: np.ndarray, keep: np.ndarray, start: int, k: int) -> tuple:
    """This chunk's top ``k`` (score descending, sample ascending) among the kept samples."""
    rows = np.flatnonzero(keep & ~np.isnan(block))
    score = np.asarray(block)[rows]
    order = np.lexsort((rows, -score.astype(np.float64)))[:k]
    return score[order], (rows[order] + start).astype(np.int64)


def reference_maps(
    bundle: Any,
    data: Any,
    refs: xr.Dataset,
    layer: str | None = None,
    channel: int | None = None,
    *,
    method: str | int = "clrp1",
    crop: bool = True,
) -> xr.Dataset:
    """The neuron's conditional heatmaps on its reference samples, in one batched pass.

    Each reference is explained for its own target class, and the decision's relevance
    (``method``'s contrast, unclipped; the target map for ``"lrp"``) is restricted to the
    neuron's channel at ``layer`` and propagated to the input, as in CRP's conditional
    attributions (``Explainer.conditional``).

    Parameters
    ----------
    bundle : cw.ModelBundle, cw.Explainer or torch.nn.Module
        The store's model.
    data
        The data the store was written from (the same argument as ``explain_dataset``'s);
        refused when its fingerprint differs from the store's.
    refs : xarray.Dataset
        A :func:`reference_samples` result.
    layer, channel : optional
        Default: ``refs.attrs["layer"]`` and ``refs.attrs["channel"]``.
    method : str or int
        The contrast of the maps (``"lrp"``, ``"clrp1"``, ``"clrp2"``, ``"sglrp"`` or a class).
    crop : bool
        Set pixels outside each map's ``box`` to NaN in ``heatmap`` and ``pixels``, as CRP crops
        references to where the neuron's conditional relevance lies. ``box`` is returned either
        way; ``ds.heatmap[r, y0:y1, x0:x1]`` is reference ``r``'s crop.

    Returns
    -------
    xarray.Dataset
        ``refs``' variables and attrs, plus: ``heatmap`` (rank, y, x) float32, the conditional
        map summed over colour; ``pixels`` (rank, color, y, x), the reference images; ``box``
        (rank, corner) with corners ``y0, x0, y1, x1`` (exclusive ends), the bounding box of
        the pixels whose map reaches ``CROP_THRESHOLD`` of its positive maximum (the whole image
        when the map has no positive value); ``map_sum`` (rank), the whole map's sum (the
        neuron's relevance for that sample, up to the rules' conservation).
    """
    from clrp_widgets.explainer import Explainer

    explainer = bundle if isinstance(bundle, Explainer) else Explainer(bundle)
    table = _table_for(refs, data)
    return maps_for(explainer, table, refs, layer, channel, method=method, crop=crop)


def maps_for(
    explainer: Any,
    table: SampleTable,
    refs: xr.Dataset,
    layer: str | None,
    channel: int | None,
    *,
    method: str | int,
    crop: bool,
) -> xr.Dataset:
    """:func:`reference_maps` on a checked sample table (the widget keeps one)."""
    import torch

    layer = str(refs.attrs["layer"]) if layer is None else layer
    channel = int(refs.attrs["channel"]) if channel is None else int(channel)
    rows = refs["image"].values.astype(np.int64)
    x = table.images[torch.from_numpy(rows)]
    targets = [int(t) for t in refs["target"].values]
    h, w = int(x.shape[2]), int(x.shape[3])
    if len(rows):
        heat = explainer.conditional(x, targets, layer, [channel], contrast=method).values[0]
    else:
        heat = np.zeros((0, h, w), np.float32)
    boxes = np.array([_box(m) for m in heat], dtype=np.int64).reshape(-1, 4)
    pixels = x.numpy()
    total = heat.sum(axis=(1, 2), dtype=np.float64).astype(np.float32)
    if crop:
        outside = ~_inside(boxes, h, w)
        heat = np.where(outside, np.nan, heat)
        pixels = np.where(outside[:, None], np.nan, pixels)
    out = refs.assign(
        heatmap=(("rank", "y", "x"), heat.astype(np.float32)),
        pixels=(("rank", "color", "y", "x"), pixels.astype(np.float32)),
        box=(("rank", "corner"), boxes),
        map_sum=("rank", total),
    )
    return out.assign_coords(corner=["y0", "x0", "y1", "x1"]).assign_attrs(
        layer=layer, channel=channel, map_method=str(method), crop=int(bool(crop))
    )


def _box(heat: np.ndarray) -> tuple[int, int, int, int]:
    positive = np.nan_to_num(heat, nan=0.0)
    top = float(positive.max(initial=0.0))
    if top <= 0:
        return (0, 0, heat.shape[0], heat.shape[1])
    ys, xs = np.nonzero(positive >= CROP_THRESHOLD * top)
    return (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)


def _inside(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    ys, xs = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    y0, x0, y1, x1 = (boxes[:, i, None, None] for i in range(4))
    return (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)


def checked_table(store: str | os.PathLike, data: Any) -> SampleTable:
    """The sample table of ``data``, refused unless it is the data the store was written from."""
    table = sample_table(data)
    attrs = xr.open_zarr(zstore.local_path(store), chunks=None, consolidated=True).attrs
    if attrs.get("data_fingerprint") != table.fingerprint():
        raise ConfigError(
            f"data is not the data the store {str(store)!r} was written from (their "
            "fingerprints differ); pass the same images and targets as to explain_dataset"
        )
    return table


def _table_for(refs: xr.Dataset, data: Any) -> SampleTable:
    if not isinstance(refs, xr.Dataset) or "image" not in refs or "store" not in refs.attrs:
        raise InputError(
            "refs must be a cw.scale.reference_samples(...) result (a Dataset with image, "
            "target and the store in its attrs)"
        )
    return checked_table(refs.attrs["store"], data)


@dataclass(frozen=True)
class _Meta:
    """What a query needs from a store's root, read with zarr directly (xarray's open costs
    more than the query); samples, images and targets are kept per store and settings."""

    path: Path
    group: zarr.Group
    layers: list[str]
    methods: list[str]
    class_names: list[str]
    chunk: int
    image: np.ndarray
    target: np.ndarray
    key: tuple  # the store's path and settings

    @classmethod
    def read(cls, path: Path) -> _Meta:
        group = zarr.open_group(path, mode="r")
        attrs = dict(group.attrs)
        zstore.check_format(path, attrs)
        key = (str(path), attrs.get("config_hash"), attrs.get("created"))
        if key not in _ROWS:
            _ROWS.clear()  # one store at a time
            _ROWS[key] = (np.asarray(group["image"][:]), np.asarray(group["target"][:]))
        image, target = _ROWS[key]
        return cls(
            path, group, list(attrs["layers"]), [str(m) for m in attrs["methods"]],
            [str(n) for n in attrs["class_names"]], int(attrs["chunk"]), image, target, key,
        )  # fmt: skip

    def complete(self) -> np.ndarray:
        """Per sample: whether its chunk is complete (read fresh: a run may be going on)."""
        done = np.asarray(self.group["completed_by"][:]) != 0
        return done[np.arange(len(self.target)) // self.chunk]


_ROWS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
_SLICES: dict[tuple, np.ndarray] = {}


def _layer(layers: list[str], layer: str) -> str:
    if layer in layers:
        return layer
    close = difflib.get_close_matches(str(layer), layers, n=3)
    hint = f" Closest: {', '.join(map(repr, close))}." if close else ""
    raise LayerNotFoundError(
        f"layer {layer!r} is not in the store.{hint} Its layers: {', '.join(layers)}"
    )


def _channel(n: int, layer: str, channel: Any) -> int:
    if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)):
        raise InputError(f"channel must be an int; got {channel!r}")
    if not 0 <= int(channel) < n:
        raise InputError(f"channel {channel} is out of range for {layer!r}; use 0..{n - 1}")
    return int(channel)


def _method(known: list[str], method: str | int) -> str:
    label = method if isinstance(method, str) else f"rather_than_{method}"
    if label not in known:
        raise ConfigError(
            f"the store holds no method {label!r}; it was written with {', '.join(known)}. "
            "Pick one of those, or write a store with that method"
        )
    return label


def _class(names: list[str], target: int | str) -> int:
    if isinstance(target, str):
        if target not in names:
            raise InputError(f"unknown class name {target!r}; the store's classes: {names}")
        return names.index(target)
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise InputError(f"target must be a class index or name; got {target!r}")
    if not 0 <= int(target) < len(names):
        raise InputError(f"target {target} is out of range; use 0..{len(names) - 1}")
    return int(target)
