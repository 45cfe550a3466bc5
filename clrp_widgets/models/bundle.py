"""``ModelBundle``: a frozen model together with what explaining it needs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torchvision.transforms.functional as tvf
from torch import nn

from clrp_widgets.engine.errors import InputError

Bounds = tuple[float | tuple[float, ...], float | tuple[float, ...]]


@dataclass(frozen=True)
class Preprocess:
    """Image to model input: to float [0, 1], resize, centre crop, normalise; adds a batch axis.

    Accepts a PIL image, a numpy array ``(H, W, C)`` (uint8 in 0–255, or float in [0, 1]; alpha
    is dropped; channel-first arrays are recognised), a numpy ``(N, H, W, C)`` batch, a torch
    tensor ``(C, H, W)`` / ``(N, C, H, W)`` (uint8 or float in [0, 1]) or the ``images``
    DataArray of ``cw.scenes``. Returns a float32 tensor ``(N, C, H, W)``.

    Parameters
    ----------
    resize : int or None
        Length of the shorter side after resizing (bilinear, antialiased); None keeps the size.
    crop : int or None
        Side of the centre crop; None keeps the resized image.
    mean, std : tuple of float
        Per-channel normalisation ``(x - mean) / std`` applied last.
    """

    resize: int | None = None
    crop: int | None = None
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)

    def __call__(self, image: Any) -> torch.Tensor:
        x = _to_float_batch(image)
        if self.resize is not None:
            x = tvf.resize(x, [self.resize], antialias=True)
        if self.crop is not None:
            x = tvf.center_crop(x, [self.crop])
        return tvf.normalize(x, list(self.mean), list(self.std))

    @property
    def input_bounds(self) -> Bounds:
        """Per-channel lowest and highest model input, i.e. where 0 and 1 are mapped to."""
        low = tuple(float(-m / s) for m, s in zip(self.mean, self.std, strict=True))
        high = tuple(float((1 - m) / s) for m, s in zip(self.mean, self.std, strict=True))
        return low, high


def _to_float_batch(image: Any) -> torch.Tensor:
    if hasattr(image, "dims") and "color" in image.dims:  # xarray from cw.scenes
        image = image.transpose(..., "color", "y", "x").values
        image = torch.from_numpy(np.ascontiguousarray(image))
    if isinstance(image, torch.Tensor):
        x = image.detach()
    elif isinstance(image, np.ndarray):
        x = _array_to_chw(image)
    elif hasattr(image, "convert"):  # PIL.Image
        x = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).movedim(-1, -3)
    else:
        raise InputError(
            f"cannot preprocess a {type(image).__name__}; pass a PIL image, a numpy (H, W, C) "
            "array or a torch (C, H, W) tensor."
        )
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise InputError(
            f"expected an RGB or grey image, (C, H, W) or (N, C, H, W), got {tuple(x.shape)}."
        )
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if not x.is_floating_point():
        raise InputError(f"image dtype {x.dtype} is not supported; use uint8 or float in [0, 1].")
    return x.float()


def _array_to_chw(image: np.ndarray) -> torch.Tensor:
    """Numpy ``(H, W)``, ``(H, W, C)`` or ``(N, H, W, C)`` (channel-first also recognised)."""
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim not in (3, 4):
        raise InputError(f"expected an (H, W, C) image array, got shape {image.shape}.")
    channel_first = image.shape[-1] not in (1, 3, 4) and image.shape[-3] in (1, 3)
    x = torch.from_numpy(np.ascontiguousarray(image))
    if not channel_first:
        x = x[..., :3].movedim(-1, -3)  # RGBA: drop alpha
    return x


@dataclass(frozen=True)
class ModelBundle:
    """A model in eval mode with gradients off, its class names, input bounds and preprocessing.

    Parameters
    ----------
    model : torch.nn.Module
        The network; it is switched to eval mode and its parameters to ``requires_grad=False``.
    class_names : sequence of str
        One name per output logit.
    input_bounds : (low, high)
        Lowest and highest possible model input (scalars or per channel), for the z^B rule.
    preprocess : callable, optional
        Image (PIL, numpy or tensor) to an ``(N, C, H, W)`` float tensor; default: to float [0, 1]
        with no resizing or normalisation (see ``Preprocess``).
    name : str
        A short label for the model (shown in results and widgets).
    output_activation : {"softmax", "sigmoid"}
        How class probabilities are read from the logits: ``"softmax"`` for single-label
        classifiers (ImageNet models), ``"sigmoid"`` for multi-label ones (the shapes model).
        Explanations always start from the logits; this only affects displayed probabilities.
    rules : str
        The rules preset that explains this model (``"paper"`` for CNNs, ``"cp_lrp"`` or
        ``"attnlrp"`` for transformers); ``cw.Explainer(bundle)`` and ``cw.evaluate(bundle)``
        use it unless given other rules.
    overrides : mapping, optional
        ``{module path, op name, layer type or torch function: Rule}`` extending ``rules`` (as
        ``cw.Explainer``'s ``overrides``), used the same way.

    Examples
    --------
    >>> bundle = ModelBundle(my_net, ["cat", "dog"], (0.0, 1.0))  # doctest: +SKIP
    """

    model: nn.Module
    class_names: Sequence[str]
    input_bounds: Bounds
    preprocess: Callable[[Any], torch.Tensor] = field(default_factory=Preprocess)
    name: str = "custom"
    output_activation: str = "softmax"
    rules: str = "paper"
    overrides: Mapping[Any, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, nn.Module):
            raise InputError(f"model must be a torch.nn.Module, got {type(self.model).__name__}.")
        if len(self.input_bounds) != 2:
            raise InputError(
                f"input_bounds must be (low, high), got {self.input_bounds!r}; "
                "for images in [0, 1] use (0.0, 1.0)."
            )
        if self.output_activation not in ("softmax", "sigmoid"):
            raise InputError(
                "output_activation must be 'softmax' or 'sigmoid', got "
                f"{self.output_activation!r}; use 'sigmoid' for a multi-label model."
            )
        self.model.eval()
        self.model.requires_grad_(False)
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
