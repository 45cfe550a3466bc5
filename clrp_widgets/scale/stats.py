"""``neuron_stats``: the data-set ranking of neurons, per class, from a store (lazy)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import xarray as xr

from clrp_widgets.engine.errors import ConfigError, InputError
from clrp_widgets.scale import store as zstore

GROUPINGS = ("class", "predicted")


def neuron_stats(store: str | os.PathLike, by: str = "class", kind: str = "contrast") -> xr.Dataset:
    """Per class, layer and channel: mean and std of neuron relevance over a store's samples.

    Lazy: the variables are dask arrays until ``.compute()`` / ``.load()``. Only samples of
    complete chunks count (a warning says how many are left out of an unfinished store).

    Parameters
    ----------
    store : str or pathlib.Path
        A store written by :func:`explain_dataset`.
    by : {"class", "predicted"}
        Group samples by their explained target class, or by the model's top class.
    kind : {"contrast", "target", "dual"}
        Which relevance: the contrastive one (target − dual, unclipped) by default.

    Returns
    -------
    xarray.Dataset
        Dimensions ``(contrast, class, layer, channel)``:

        - ``mean``, ``std`` (contrast, class, layer, channel) float32: over the class's samples
          (std with ddof=0). ``channel`` runs to the widest layer; a layer's channels beyond its
          width (``n_channels``) are NaN.
        - ``n_samples`` (class) int: samples per class.
        - coordinates ``contrast`` (the methods), ``class`` (only classes with samples),
          ``class_name`` (class),
          ``layer`` (module names in forward order), ``n_channels`` (layer), ``channel``.
        - attrs ``by``, ``kind``, ``store``, ``samples`` (complete samples used).

    Examples
    --------
    One class and layer, the top 5 neurons by mean contrastive relevance:

    >>> stats = cw.scale.neuron_stats("shapes.zarr")
    >>> one = stats.sel({"class": 3, "layer": "features.3", "contrast": "clrp1"}).compute()
    >>> one = one.isel(channel=slice(0, int(one.n_channels)))
    >>> one["mean"].sortby(one["mean"], ascending=False)[:5]

    Use item access (``stats["mean"]``): ``stats.mean`` is the Dataset's own method.
    """
    if by not in GROUPINGS:
        raise ConfigError(f"by must be one of {', '.join(GROUPINGS)}; got {by!r}")
    if kind not in zstore.KINDS:
        raise ConfigError(f"kind must be one of {', '.join(zstore.KINDS)}; got {kind!r}")
    path = zstore.local_path(store)
    if zstore.is_new(path):
        raise InputError(f"no store at {str(path)!r}; write one with cw.scale.explain_dataset")
    root = xr.open_zarr(path, chunks=None, consolidated=True)  # small: read here, not on dask
    zstore.check_format(path, root.attrs)
    samples = _complete_samples(root)
    labels = (
        root.target.values[samples]
        if by == "class"
        else root.logits.isel(sample=samples).argmax("class").values
    )
    layers = list(root.attrs["layers"])
    parts = [_layer_stats(path, name, samples, labels, kind) for name in layers]
    stats = xr.concat(parts, dim=pd.Index(layers, name="layer"), join="outer")
    stats = stats.transpose("contrast", "class", "layer", "channel")
    classes = stats["class"].values
    counts = np.bincount(labels, minlength=root.sizes["class"])[classes]
    return (
        stats.assign(n_samples=("class", counts))
        .assign_coords(
            class_name=("class", root.class_name.values[classes]),
            n_channels=("layer", [parts[i].sizes["channel"] for i in range(len(layers))]),
        )
        .assign_attrs(by=by, kind=kind, store=str(path), samples=len(samples))
    )


def _complete_samples(root: xr.Dataset) -> np.ndarray:
    done = root.completed_by.values != 0
    chunk = int(root.attrs["chunk"])
    complete = done[np.arange(root.sizes["sample"]) // chunk]
    if not complete.any():
        raise InputError(
            f"no chunk of {root.attrs.get('model')!r} store is complete yet; run "
            "cw.scale.explain_dataset on it (again) first"
        )
    if not complete.all():
        warnings.warn(
            f"the store is unfinished: {int((~complete).sum())} of {len(complete)} samples are "
            "left out; rerun explain_dataset to complete it",
            stacklevel=3,
        )
    return np.flatnonzero(complete)


def _layer_stats(
    path: object, name: str, samples: np.ndarray, labels: np.ndarray, kind: str
) -> xr.Dataset:
    relevance = xr.open_zarr(path, group=f"layers/{name}", consolidated=True).neuron_relevance.sel(
        kind=kind, drop=True
    )
    relevance = relevance.isel(sample=samples).assign_coords({"class": ("sample", labels)})
    groups = relevance.groupby("class")
    return xr.Dataset({"mean": groups.mean("sample"), "std": groups.std("sample")})
