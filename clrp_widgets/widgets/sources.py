"""What the Explorer explains: Explainers per rules preset, the input tensor, the default layer."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from clrp_widgets.engine.errors import InputError


def as_input(image: Any, bundle: Any) -> torch.Tensor:
    """A (1, C, H, W) float tensor from a tensor, DataArray, numpy array or PIL image."""
    if hasattr(image, "dims") and hasattr(image, "values"):  # xarray.DataArray
        image = torch.as_tensor(np.asarray(image.values))
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[0] in (1, 3):
        image = torch.as_tensor(image)
    if not isinstance(image, torch.Tensor):
        preprocess = getattr(bundle, "preprocess", None)
        if preprocess is None:
            raise InputError(
                f"cannot turn a {type(image).__name__} into model input without a bundle's "
                "preprocess; pass a (C, H, W) tensor or a ModelBundle from cw.load_model"
            )
        image = preprocess(image)
    x = image.detach().to(torch.float32)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[0] != 1:
        raise InputError(
            f"the Explorer shows one image, got shape {tuple(x.shape)}; pass (C, H, W) or "
            "(1, C, H, W), e.g. images[0]"
        )
    return x


def explainers(source: Any, rules: str | None) -> tuple[Any, Any, str, Any]:
    """(rules -> Explainer, the first Explainer, its rules name, the bundle or None).

    A user's Explainer is kept as is; one with a custom rules mapping is offered as "custom".
    """
    from clrp_widgets.explainer import Explainer

    if isinstance(source, Explainer):
        own = source.rules if isinstance(source.rules, str) else "custom"

        def make(name: str) -> Explainer:
            if name == own:
                return source
            return Explainer(
                source.model,
                rules=name,
                input_bounds=source.input_bounds,
                class_names=source.class_names,
            )

        rules = rules or own
        return make, make(rules), rules, None

    def build(name: str) -> Explainer:
        return Explainer(source, rules=name)

    rules = rules or "paper"
    return build, build(rules), rules, (source if hasattr(source, "model") else None)


def default_layer(explainer: Any) -> str:
    """The last Conv2d of the model (the paper's neuron layer), else the last capturable layer."""
    modules = dict(explainer.model.named_modules())
    convs = [n for n in explainer.layer_names if isinstance(modules.get(n), torch.nn.Conv2d)]
    return (convs or list(explainer.layer_names))[-1]
