"""``load_model(name)``: the shipped "shapes" CNN and "shapes_vit" transformer, or torchvision
ImageNet models from files.

Nothing is downloaded. torchvision weights are read from ``weights_path=`` or from torch's hub
cache (``$TORCH_HOME/hub/checkpoints/``, by default ``~/.cache/torch/hub/checkpoints/``); the model
is built on the meta device and takes its tensors from that file, so there is never a random init.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models import WeightsEnum, get_model, get_model_weights

from clrp_widgets.engine.errors import ConfigError, ModelNotAvailableError
from clrp_widgets.models.bundle import ModelBundle, Preprocess
from clrp_widgets.models.shapes_net import ShapesNet
from clrp_widgets.models.shapes_vit import shapes_vit

SHAPES_WEIGHTS = Path(__file__).with_name("weights") / "shapes.pt"
SHAPES_VIT_WEIGHTS = Path(__file__).with_name("weights") / "shapes_vit.pt"
#: the rules preset of the shapes_vit bundle: AttnLRP scored above CP-LRP on the pointing games
#: and the ablation of bench/vit_pointing.py, for every method (see bench/README.md)
SHAPES_VIT_RULES = "attnlrp"
TORCHVISION_MODELS = ("vgg16", "vgg16_bn", "alexnet", "resnet50")
MODEL_NAMES = ("shapes", *TORCHVISION_MODELS, "shapes_vit")


def load_model(name: str, *, weights_path: str | os.PathLike[str] | None = None) -> ModelBundle:
    """Load a model with its class names, input bounds and preprocessing.

    Parameters
    ----------
    name : str
        ``"shapes"`` (shipped with the package, 8 shape classes, input [0, 1] at 64×64),
        ``"shapes_vit"`` (shipped: a small torchvision ``VisionTransformer`` for the same scenes;
        its bundle's ``rules`` is the transformer preset ``"attnlrp"``) or one of ``"vgg16"``,
        ``"vgg16_bn"``, ``"alexnet"``, ``"resnet50"`` (ImageNet, torchvision).
    weights_path : path, optional
        A state-dict file to read instead of the shipped file or torch's hub cache.

    Returns
    -------
    ModelBundle
        ``.model`` in eval mode with gradients off. For ImageNet models ``.input_bounds`` is the
        per-channel true range of normalised input, ``((0 - mean) / std, (1 - mean) / std)``,
        about ``((-2.118, -2.036, -1.804), (2.249, 2.429, 2.640))``; the paper used the scalars
        -2.1179 and 2.64 (the extremes over channels).

    Raises
    ------
    ModelNotAvailableError
        The weights file is not on this machine; the message names the file, where to put it
        and how to get it.
    """
    if name == "shapes":
        return _load_shapes(Path(weights_path) if weights_path is not None else SHAPES_WEIGHTS)
    if name == "shapes_vit":
        path = Path(weights_path) if weights_path is not None else SHAPES_VIT_WEIGHTS
        return _load_shapes_vit(path)
    if name in TORCHVISION_MODELS:
        return _load_torchvision(name, weights_path)
    raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}.")


def _load_shapes(path: Path) -> ModelBundle:
    return _load_scene_model(path, "shapes", lambda meta: ShapesNet(len(meta["class_names"])))


def _load_shapes_vit(path: Path) -> ModelBundle:
    return _load_scene_model(
        path,
        "shapes_vit",
        lambda meta: shapes_vit(len(meta["class_names"]), **meta["vit"]),
        rules=SHAPES_VIT_RULES,
    )


def _load_scene_model(
    path: Path, name: str, build: Callable[[dict], nn.Module], rules: str = "paper"
) -> ModelBundle:
    """A shipped model trained on the generated scenes (``python -m ...train_<name>``)."""
    if not path.is_file():
        raise ModelNotAvailableError(
            f"the {name} weights {path} are missing; reinstall clrp-widgets or recreate them "
            f"with `python -m clrp_widgets.models.train_{name}`."
        )
    saved = torch.load(path, map_location="cpu", weights_only=True)
    meta = saved["meta"]
    model = build(meta)
    model.load_state_dict(saved["state_dict"])
    size = int(meta["input_size"])
    low, high = meta["input_bounds"]
    return ModelBundle(
        model=model,
        class_names=meta["class_names"],
        input_bounds=(float(low), float(high)),
        preprocess=Preprocess(resize=size, crop=size),
        name=name,
        output_activation="sigmoid",
        rules=rules,
    )


def _load_torchvision(name: str, weights_path: str | os.PathLike[str] | None) -> ModelBundle:
    enum: Any = get_model_weights(name)
    default: WeightsEnum = enum.DEFAULT
    if weights_path is not None:
        path, weights = Path(weights_path), default
    else:
        path, weights = _cached_file(enum, default)
    if not path.is_file():
        raise ModelNotAvailableError(_missing_message(name, default, path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    with torch.device("meta"):
        model = get_model(name, weights=None)
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as err:
        raise ModelNotAvailableError(
            f"{path} is not a state dict of torchvision's {name} ({err.args[0].splitlines()[0]}); "
            f"save one with torch.save(torchvision.models.{name}(weights='DEFAULT').state_dict(), "
            "path) on a machine with network."
        ) from None
    preset = weights.transforms()  # e.g. resnet50 V1 and V2 resize differently
    preprocess = Preprocess(
        resize=preset.resize_size[0],
        crop=preset.crop_size[0],
        mean=tuple(preset.mean),
        std=tuple(preset.std),
    )
    return ModelBundle(
        model=model,
        class_names=default.meta["categories"],
        input_bounds=preprocess.input_bounds,
        preprocess=preprocess,
        name=name,
    )


def _checkpoints_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _cached_file(enum: Any, default: WeightsEnum) -> tuple[Path, WeightsEnum]:
    """The default weights' file in the hub cache, else any other cached version of them."""
    folder = _checkpoints_dir()
    for weights in [default, *enum]:
        candidate = folder / os.path.basename(weights.url)
        if candidate.is_file():
            return candidate, weights
    return folder / os.path.basename(default.url), default


def _missing_message(name: str, weights: WeightsEnum, path: Path) -> str:
    return (
        f"weights for {name!r} are not on this machine: {path} does not exist (no download happens "
        f"at run time). Put the file there (set TORCH_HOME to use another cache folder), or pass "
        f"weights_path=. Get it from {weights.url} (e.g. `curl -L -o {path.name} {weights.url}`) "
        f"or, on a machine with network, with torchvision.models.{name}(weights='DEFAULT'), "
        f"torchvision {torchvision.__version__}."
    )
