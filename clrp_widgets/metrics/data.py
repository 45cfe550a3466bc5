"""The evaluation data the runner consumes: model-ready images with per-object boxes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from clrp_widgets.engine.errors import InputError


@dataclass(frozen=True)
class EvalData:
    """Images ready for the model, which classes they hold and where.

    Attributes
    ----------
    images : torch.Tensor
        (N, C, H, W) float, already preprocessed for the model.
    labels : numpy.ndarray
        (N, n_classes) bool, True where a class is present.
    boxes : numpy.ndarray
        (N, O, 4) int64 object boxes (y0, x0, y1, x1) in pixels of ``images``, y1/x1 exclusive;
        rows of absent objects are -1.
    object_class : numpy.ndarray
        (N, O) int64 class index of each object, -1 for absent objects.
    ids : tuple of str
        One identifier per image (file name, or the scene index).
    class_names : tuple of str
        Names of the class indices, when the data knows them (else empty).
    """

    images: torch.Tensor
    labels: np.ndarray
    boxes: np.ndarray
    object_class: np.ndarray
    ids: tuple[str, ...]
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.ndim != 4 or not self.images.is_floating_point():
            raise InputError(f"images must be float (N, C, H, W); got {tuple(self.images.shape)}.")
        for name in ("labels", "boxes", "object_class", "ids"):
            if len(getattr(self, name)) != n:
                raise InputError(f"{name} has {len(getattr(self, name))} rows for {n} images.")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: slice | np.ndarray | list[int]) -> EvalData:
        """Select images by position (a slice or index array)."""
        idx = np.arange(len(self))[index]
        return EvalData(
            images=self.images[torch.as_tensor(idx)],
            labels=self.labels[idx],
            boxes=self.boxes[idx],
            object_class=self.object_class[idx],
            ids=tuple(self.ids[i] for i in idx),
            class_names=self.class_names,
        )

    def region(self, i: int, cls: int) -> np.ndarray:
        """The (k, 4) boxes of class ``cls`` in image ``i`` (k = 0 when it is absent)."""
        return self.boxes[i][self.object_class[i] == cls]

    @classmethod
    def from_scenes(cls, scenes: Any, preprocess: Any = None) -> EvalData:
        """Convert ``cw.scenes(...)``; ``preprocess`` maps its [0, 1] tensor to model input."""
        images = scenes.tensor()
        if preprocess is not None:
            images = preprocess(images)
        return cls(
            images=images,
            labels=np.asarray(scenes.labels.values) > 0,
            boxes=np.asarray(scenes.boxes.values, dtype=np.int64),
            object_class=np.asarray(scenes.object_class.values, dtype=np.int64),
            ids=tuple(f"scene-{int(s)}" for s in scenes.images["sample"].values),
            class_names=tuple(scenes.class_names),
        )


def pad_objects(
    objects: list[list[tuple[int, tuple[int, int, int, int]]]],
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image lists of (class, box) into padded (N, O, 4) boxes and (N, O) classes (-1 pad)."""
    width = max((len(o) for o in objects), default=0) or 1
    boxes = np.full((len(objects), width, 4), -1, dtype=np.int64)
    classes = np.full((len(objects), width), -1, dtype=np.int64)
    for i, objs in enumerate(objects):
        for j, (c, box) in enumerate(objs):
            boxes[i, j] = box
            classes[i, j] = c
    return boxes, classes


def normaliser(preprocess: Any) -> Any:
    """A bundle's ``Preprocess`` without its resize and crop, i.e. only the normalisation.

    Evaluation data keeps its own pixel grid (scenes as generated, folder images resized to a
    square) so that boxes stay exact. Returns None for anything but a ``Preprocess``-like
    dataclass with ``resize`` and ``crop`` fields (the data is then used as it is).
    """
    if dataclasses.is_dataclass(preprocess) and hasattr(preprocess, "crop"):
        return dataclasses.replace(preprocess, resize=None, crop=None)  # type: ignore[type-var]
    return None
