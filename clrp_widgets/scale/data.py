"""Turn the accepted kinds of ``data`` into one in-memory sample table.

A *sample* is one (image, target class) pair. Scenes give one sample per class present in an
image, so a scene with three objects is explained three times, once per class.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from clrp_widgets.engine.errors import InputError


@dataclass(frozen=True)
class SampleTable:
    """Images and the samples drawn from them.

    Attributes
    ----------
    images : torch.Tensor
        (n_images, C, H, W) float32 on the CPU.
    image : numpy.ndarray
        (n_samples,) int64: the row of ``images`` each sample explains.
    target : numpy.ndarray
        (n_samples,) int64: the class each sample explains.
    """

    images: torch.Tensor
    image: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return len(self.target)

    def batch(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the (x, target) numpy arrays of samples ``start:stop``."""
        rows = self.image[start:stop]
        return self.images[torch.from_numpy(rows)].numpy(), self.target[start:stop].copy()

    def fingerprint(self) -> str:
        """SHA-256 of the image values, the image index and the targets."""
        digest = hashlib.sha256()
        digest.update(str(tuple(self.images.shape)).encode())
        digest.update(np.ascontiguousarray(self.images.numpy()).tobytes())
        digest.update(self.image.astype("<i8").tobytes())
        digest.update(self.target.astype("<i8").tobytes())
        return digest.hexdigest()


def sample_table(data: object) -> SampleTable:
    """Build the :class:`SampleTable` of any accepted ``data`` (see ``explain_dataset``)."""
    if hasattr(data, "labels") and hasattr(data, "tensor"):
        return _from_scenes(data)
    if isinstance(data, torch.Tensor):
        raise InputError(
            "a bare image tensor has no targets; pass data=(images, targets) with targets an int "
            "or one class index per image"
        )
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return _from_tensor(data[0], data[1])
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        return _from_batches(data)
    raise InputError(
        f"data of type {type(data).__name__} is not supported; pass cw.scenes(...), "
        "(images, targets) with images a (N, C, H, W) tensor, or an iterable of such batches"
    )


def _from_scenes(scenes: object) -> SampleTable:
    images = scenes.tensor().detach().to("cpu", torch.float32).contiguous()  # type: ignore[attr-defined]
    labels = np.asarray(scenes.labels) > 0  # type: ignore[attr-defined]
    image, target = np.nonzero(labels)
    if len(target) == 0:
        raise InputError("the scenes hold no labelled object; generate scenes with n >= 1")
    return SampleTable(images, image.astype(np.int64), target.astype(np.int64))


def _from_tensor(images: torch.Tensor, targets: object) -> SampleTable:
    if images.ndim != 4:
        raise InputError(
            f"images must be (N, C, H, W); got shape {tuple(images.shape)}. "
            "Add a batch axis with images.unsqueeze(0) for one image"
        )
    if len(images) == 0:
        raise InputError("images hold no sample (N = 0); pass at least one image")
    if images.is_floating_point() is False:
        raise InputError(
            f"images must be floating point; got {images.dtype}. Convert with images.float() "
            "(and scale to the model's input range)"
        )
    n = len(images)
    if isinstance(targets, int):
        target = np.full(n, targets, dtype=np.int64)
    else:
        tensor = torch.as_tensor(targets)
        if tensor.ndim != 1 or len(tensor) != n or tensor.is_floating_point():
            raise InputError(
                f"targets must be an int or {n} integer class indices (one per image); "
                f"got {tuple(tensor.shape)} of {tensor.dtype}"
            )
        target = tensor.to("cpu", torch.int64).numpy()
    images = images.detach().to("cpu", torch.float32).contiguous()
    return SampleTable(images, np.arange(n, dtype=np.int64), target)


def _from_batches(batches: Iterable) -> SampleTable:
    xs, ts = [], []
    for item in batches:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise InputError(
                "each batch of an iterable must be (images, targets), e.g. a torch DataLoader; "
                f"got {type(item).__name__}"
            )
        part = _from_tensor(torch.as_tensor(item[0]), item[1])
        xs.append(part.images)
        ts.append(part.target)
    if not xs:
        raise InputError("the iterable of batches was empty; pass at least one (images, targets)")
    images = torch.cat(xs)
    return SampleTable(images, np.arange(len(images), dtype=np.int64), np.concatenate(ts))
