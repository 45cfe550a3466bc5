"""The zarr store of a data-set run: layout, creation, settings check and chunk bookkeeping.

Layout (every per-sample array is chunked by ``chunk`` samples along ``sample``)::

    /                 target (sample) int64, image (sample) int64, logits (sample, class)
                      completed_by (chunk) int64: id of the run that finished a chunk, 0 = not yet
                      coords: sample, class (+ class_name), contrast (one per method), kind
                      attrs: format, package_version, created, and the settings: model,
                      model_fingerprint, methods, rules, input_bounds, dual_seed, layers (forward
                      order), data_fingerprint, n_samples, chunk, class_names; all of them also
                      as JSON in ``config`` and hashed in ``config_hash``
    /input            heatmap (contrast, kind, sample, y, x) float32: input relevance, summed
                      over colour
    /layers/<module>  neuron_relevance (contrast, kind, sample, channel) float32: a layer's
                      relevance summed over y and x (linear layers: per unit)
                      activation_max, activation_mean (sample, channel) float32: each
                      channel's activation, maximum and mean over y and x (format 2)

Open it with ``xr.open_zarr(path)`` (root), ``xr.open_zarr(path, group="layers/features.3")`` or
``xr.open_datatree(path, engine="zarr")`` (everything). Rows of chunks whose ``completed_by`` is 0
are not written yet (NaN).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
import zarr

from clrp_widgets.engine.errors import ConfigError, InputError

FORMAT = "clrp-widgets scale store 2"
KINDS = ("target", "dual", "contrast")
SUMMARIES = ("max", "mean")  # activation summaries per sample, layer and channel


def check_format(path: Path, attrs: dict) -> None:
    """Refuse a store of another format, naming the fix (an earlier format has no activation
    summaries)."""
    found = attrs.get("format")
    if found == FORMAT:
        return
    if isinstance(found, str) and found.startswith("clrp-widgets scale store "):
        raise ConfigError(
            f"{str(path)!r} is a data-set store of an earlier format ({found!r}, without the "
            f"activation summaries that {FORMAT!r} holds); write it again with "
            "cw.scale.explain_dataset to a new path (or delete that folder first)"
        )
    raise ConfigError(
        f"{str(path)!r} is a zarr store but not a clrp-widgets data-set store; choose a new "
        "path or delete that folder"
    )


@dataclass(frozen=True)
class Layout:
    """Everything that fixes the store's shape."""

    n_samples: int
    chunk: int
    image_size: tuple[int, int]
    class_names: tuple[str, ...]
    methods: tuple[str, ...]
    layers: dict[str, int]  # module name -> channels (or units)

    @property
    def n_chunks(self) -> int:
        return -(-self.n_samples // self.chunk)

    def bounds(self, index: int) -> tuple[int, int]:
        """First and one-past-last sample of chunk ``index``."""
        return index * self.chunk, min((index + 1) * self.chunk, self.n_samples)


def config_hash(config: dict) -> str:
    """SHA-256 of the settings, as canonical JSON."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def local_path(store: object) -> Path:
    """Check ``store`` names a usable local directory path and return it (not created yet)."""
    if not isinstance(store, (str, os.PathLike)):
        raise InputError(
            f"store must be a directory path (str or pathlib.Path); got {type(store).__name__}"
        )
    text = os.fspath(store)
    if "://" in str(text):
        raise InputError(
            f"store {text!r} is a URL; pass a local directory path on a file system that every "
            "worker can reach (e.g. a shared mount)"
        )
    path = Path(text).expanduser().absolute()
    if path.is_file():
        raise InputError(f"store {str(path)!r} is a file; pass a directory path (e.g. 'run.zarr')")
    if not path.parent.is_dir():
        raise InputError(
            f"the folder {str(path.parent)!r} of store {path.name!r} does not exist; "
            "create it first or fix the path"
        )
    writable_dir = path if path.is_dir() else path.parent
    if not os.access(writable_dir, os.W_OK):
        raise InputError(f"store {str(path)!r} is not writable; choose a folder you can write to")
    return path


def is_new(path: Path) -> bool:
    """True when nothing is stored at ``path`` yet (missing or an empty folder)."""
    return not path.exists() or not any(path.iterdir())


def check_settings(path: Path, config: dict) -> None:
    """Refuse a store that is not ours or was written with other settings."""
    try:
        attrs = dict(zarr.open_group(path, mode="r").attrs)
    except Exception as error:  # not a zarr group at all
        raise ConfigError(
            f"{str(path)!r} exists and is not a clrp-widgets store; choose a new path "
            "or delete that folder"
        ) from error
    check_format(path, attrs)
    if attrs.get("config_hash") == config_hash(config):
        return
    stored = json.loads(str(attrs.get("config", "{}")))
    changed = sorted(k for k in config.keys() | stored.keys() if config.get(k) != stored.get(k))
    detail = ", ".join(f"{k}: stored {stored.get(k)!r}, now {config.get(k)!r}" for k in changed)
    raise ConfigError(
        f"store {str(path)!r} was written with other settings ({detail}); results of two "
        "settings are never mixed. Rerun with the stored settings to resume, or pass a new "
        "store path"
    )


def create(path: Path, layout: Layout, image: np.ndarray, target: np.ndarray, attrs: dict) -> None:
    """Write the empty store (metadata, targets, coordinates) atomically at ``path``."""
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.creating")
    try:
        for group, dataset in _skeleton(layout, image, target, attrs).items():
            dataset.to_zarr(
                staging, group=group, mode="a" if group else "w-", compute=False, consolidated=False
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "consolidated metadata is not in v3"
            zarr.consolidate_metadata(staging)
        if path.exists():
            path.rmdir()  # an empty folder, see is_new
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def completed(path: Path) -> np.ndarray:
    """``completed_by`` of every chunk: the finishing run's id, 0 where not complete."""
    return np.asarray(array(zarr.open_group(path, mode="r"), "completed_by")[:])


def array(group: zarr.Group, path: str) -> zarr.Array:
    """The array at ``path`` in ``group``."""
    found = group[path]
    assert isinstance(found, zarr.Array), f"{path} is not an array"
    return found


def _skeleton(layout: Layout, image: np.ndarray, target: np.ndarray, attrs: dict) -> dict:
    n, c = layout.n_samples, layout.chunk
    per_sample = {
        "sample": np.arange(n),
        "contrast": np.array(layout.methods, dtype=object),
        "kind": np.array(KINDS, dtype=object),
    }
    classes = np.arange(len(layout.class_names))
    root = xr.Dataset(
        {
            "target": ("sample", target.astype(np.int64)),
            "image": ("sample", image.astype(np.int64)),
            "logits": (("sample", "class"), _empty((n, len(classes)), c, 0)),
            "completed_by": ("chunk", da.zeros(layout.n_chunks, dtype=np.int64, chunks=1)),
        },
        coords={
            **per_sample,
            "class": classes,
            "class_name": ("class", np.array(layout.class_names, dtype=object)),
        },
        attrs=attrs,
    )
    m, k = len(layout.methods), len(KINDS)
    h, w = layout.image_size
    groups = {
        "": root,
        "input": xr.Dataset(
            {"heatmap": (("contrast", "kind", "sample", "y", "x"), _empty((m, k, n, h, w), c, 2))},
            coords=per_sample,
        ),
    }
    for name, channels in layout.layers.items():
        groups[f"layers/{name}"] = xr.Dataset(
            {
                "neuron_relevance": (
                    ("contrast", "kind", "sample", "channel"),
                    _empty((m, k, n, channels), c, 2),
                ),
                **{
                    f"activation_{stat}": (("sample", "channel"), _empty((n, channels), c, 0))
                    for stat in SUMMARIES
                },
            },
            coords={**per_sample, "channel": np.arange(channels)},
            attrs={"layer": name},
        )
    return groups


def _empty(shape: tuple, chunk: int, axis: int) -> da.Array:
    """A NaN placeholder chunked by ``chunk`` along ``axis`` (only its metadata is written)."""
    chunks = tuple(chunk if i == axis else size for i, size in enumerate(shape))
    return da.full(shape, np.nan, dtype=np.float32, chunks=chunks)


def provenance(config: dict) -> dict:
    """Root attributes: the settings (and their hash) plus when and by what the store was made."""
    from clrp_widgets import __version__

    return {
        "format": FORMAT,
        "package_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **config,
        "config": json.dumps(config, sort_keys=True),
        "config_hash": config_hash(config),
    }
