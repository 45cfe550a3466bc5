"""What the Explorer explains: Explainers per rules preset, its image set, the default layer.

An image set is a batch tensor (N, C, H, W), ``cw.scenes(...)``, an xarray DataArray (with a
``sample`` axis) or Dataset (images and labels), a folder of image files, a list of images, or
one image (tensor, array, DataArray or PIL image). Every image becomes a (1, C, H, W) tensor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clrp_widgets.engine.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass
class ImageSet:
    """Model inputs (each (1, C, H, W)) with one label per image ("" when unknown)."""

    xs: list[torch.Tensor]
    labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = [str(s) for s in self.labels] or [""] * len(self.xs)

    def add(self, x: torch.Tensor, label: str) -> int:
        """Append an image; returns its index."""
        self.xs.append(x)
        self.labels.append(label)
        return len(self.xs) - 1


def as_input(image: Any, bundle: Any) -> torch.Tensor:
    """A (1, C, H, W) float tensor from a tensor, DataArray, numpy array or PIL image."""
    if hasattr(image, "dims") and hasattr(image, "values"):  # xarray.DataArray
        image = torch.as_tensor(np.asarray(image.values))
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[0] in (1, 3):
        image = torch.as_tensor(image)
    if not isinstance(image, torch.Tensor):
        image = _preprocess(bundle, type(image).__name__)(image)
    x = image.detach().to(torch.float32)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[0] != 1:
        raise InputError(
            f"expected one image of shape (C, H, W) or (1, C, H, W), got {tuple(x.shape)}; "
            "pass a batch (N, C, H, W) as the Explorer's image set instead"
        )
    return x


def _preprocess(bundle: Any, what: str) -> Any:
    preprocess = getattr(bundle, "preprocess", None)
    if preprocess is None:
        raise InputError(
            f"cannot turn a {what} into model input without a bundle's preprocess; pass "
            "(C, H, W) tensors or a ModelBundle from cw.load_model"
        )
    return preprocess


def _multi_hot_names(labels: Any, names: list[str]) -> list[str]:
    values = np.asarray(labels)
    if values.ndim == 2:
        return [", ".join(names[c] for c in np.flatnonzero(row > 0.5)) for row in values]
    return [names[int(v)] if 0 <= int(v) < len(names) else str(v) for v in values.ravel()]


def _label_names(labels: Any) -> list[str]:
    """Text labels from a DataArray of class ids, strings or multi-hot rows."""
    values = np.asarray(labels)
    if values.dtype.kind in "UO":
        return [str(v) for v in values.ravel()]
    if "class_name" in getattr(labels, "coords", {}):
        names = [str(n) for n in labels["class_name"].values]
        return _multi_hot_names(values, names)
    return [str(v) for v in values.tolist()]


def _from_xarray(images: Any) -> ImageSet:
    import xarray as xr

    labels: list[str] = []
    if isinstance(images, xr.Dataset):
        arrays = [v for v in images.data_vars.values() if v.ndim in (3, 4)]
        name = next((n for n in ("images", "image") if n in images.data_vars), None)
        if name is None and not arrays:
            raise InputError(
                "the Dataset has no image variable; name it 'images' with dims "
                "(sample, color, y, x)"
            )
        found = next((n for n in ("labels", "label") if n in images.data_vars), None)
        if found is not None:
            labels = _label_names(images[found])
        images = images[name] if name else arrays[0]
    if "sample" not in images.dims:
        return ImageSet([as_input(images, None)], labels[:1])
    if not labels and "label" in images.coords:
        labels = _label_names(images["label"])
    order = ("sample", *[d for d in images.dims if d != "sample"])
    batch = torch.as_tensor(np.asarray(images.transpose(*order).values, dtype=np.float32))
    return ImageSet([b[None] for b in batch], labels)


def _from_folder(folder: Path, bundle: Any) -> ImageSet:
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(
            f"no image files in {folder}; expected files ending in {', '.join(IMAGE_SUFFIXES)}"
        )
    preprocess = _preprocess(bundle, "folder of image files")
    xs = []
    for path in files:
        with Image.open(path) as img:
            xs.append(as_input(preprocess(img.convert("RGB")), bundle))
    return ImageSet(xs, [p.stem for p in files])


def image_set(images: Any, bundle: Any) -> ImageSet:
    """Every image of ``images`` (see the module docstring) as model input, with labels."""
    if hasattr(images, "tensor") and hasattr(images, "labels") and hasattr(images, "images"):
        names = [str(n) for n in getattr(images, "class_names", ())]  # cw.scenes(...)
        batch = images.tensor()
        labels = _multi_hot_names(images.labels.values, names) if names else []
        return ImageSet([b[None] for b in batch], labels)
    if isinstance(images, (str, os.PathLike)):
        path = Path(images)
        if path.is_dir():
            return _from_folder(path, bundle)
        if not path.exists():
            raise InputError(f"{path} does not exist; pass a folder of images or an image file")
        from PIL import Image

        with Image.open(path) as img:
            return ImageSet([as_input(img.convert("RGB"), bundle)], [path.stem])
    if hasattr(images, "dims") and hasattr(images, "sizes"):
        return _from_xarray(images)
    if isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 4:
        batch = torch.as_tensor(np.asarray(images)) if isinstance(images, np.ndarray) else images
        if batch.shape[0] == 0:
            raise InputError("the image batch is empty; pass at least one image")
        return ImageSet([b[None] for b in batch.detach().to(torch.float32)])
    if isinstance(images, (list, tuple)):
        if not images:
            raise InputError("the image list is empty; pass at least one image")
        return ImageSet([as_input(i, bundle) for i in images])
    return ImageSet([as_input(images, bundle)])


def explainers(source: Any, rules: str | None) -> tuple[Any, dict[str, Any], str, Any]:
    """(rules -> Explainer, the Explainers built already, the rules name, the bundle or None).

    Nothing is built here for a bundle or module (the Explorer builds in its worker, so that it
    displays at once). A user's Explainer is kept as is; one with a custom rules mapping is
    offered as "custom".
    """
    from clrp_widgets.explainer import Explainer

    if isinstance(source, Explainer):
        own = source.rules if isinstance(source.rules, str) else "custom"

        def make(name: str) -> Explainer:
            if name == own:
                return source
            return source.with_rules(name)  # keeps overrides, canonizers, bounds, names

        rules = rules or own
        return make, {own: source}, rules, None

    def build(name: str) -> Explainer:
        return Explainer(source, rules=name)

    rules = rules or getattr(source, "rules", None) or "paper"  # a bundle's own preset first
    return build, {}, rules, (source if hasattr(source, "model") else None)


def default_layer(explainer: Any) -> str:
    """The last attention map of a transformer (a ``:softmax`` layer, its neurons are the
    heads), else the last Conv2d of the model (the paper's neuron layer), else the last
    capturable layer."""
    attention = [n for n in explainer.layer_names if n.endswith(":softmax")]
    if attention:
        return attention[-1]
    modules = dict(explainer.model.named_modules())
    convs = [n for n in explainer.layer_names if isinstance(modules.get(n), torch.nn.Conv2d)]
    return (convs or list(explainer.layer_names))[-1]


def layer_type(explainer: Any, name: str) -> str:
    """The layer's type for display: the module class, or the op of an op-level layer."""
    module = dict(explainer.model.named_modules()).get(name)
    if module is not None:
        return type(module).__name__
    return name.rsplit(":", 1)[-1] if ":" in name else "op"
