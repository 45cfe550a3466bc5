"""Checks of user input; every error names the problem and the fix."""

from __future__ import annotations

import difflib
import numbers
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from .errors import ConfigError, InputError, LayerNotFoundError
from .locking import model_lock
from .seeds import CONTRASTS, DUAL_SEEDS

KINDS = ("target", "dual", "contrast")


def check_input(x: Any) -> Tensor:
    """Check the input batch ``x``: a non-empty, finite floating-point tensor with a batch axis.

    Its shape is checked against the first Conv/Linear layer the forward pass reaches (in data
    flow, so a space-to-depth or a padding before it is taken into account):
    :func:`check_first_layer`.
    """
    if not isinstance(x, Tensor):
        raise InputError(
            f"x must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}; convert "
            "it with torch.as_tensor(x, dtype=torch.float32)."
        )
    if not x.is_floating_point():
        raise InputError(
            f"x has dtype {x.dtype}; relevance needs a floating-point input. Convert it, e.g. "
            "x.float() / 255 for 8-bit images, then normalise as the model expects."
        )
    if x.ndim < 2:
        raise InputError(
            f"x has shape {tuple(x.shape)}; the engine needs a batch (N, C, H, W), or "
            "(N, features) for a model starting with Linear. Add the batch dimension with "
            "x.unsqueeze(0)."
        )
    if x.shape[0] == 0:
        raise InputError("x is an empty batch (N = 0); pass at least one sample.")
    if not bool(torch.isfinite(x).all()):
        raise InputError(
            "x contains NaN or inf values; replace them (e.g. torch.nan_to_num) or fix the "
            "preprocessing."
        )
    return x


def check_first_layer(name: str, layer: Any, value: Tensor, x: Tensor) -> None:
    """Check what the first Conv/Linear layer reached receives against what it takes.

    ``layer`` is the module, or ``(weight, groups)`` of a functional call; ``value`` its input;
    ``x`` the model input (named in the message when ``value`` is not ``x`` itself).
    """
    weight: Tensor
    if isinstance(layer, nn.Module):
        weight, groups = layer.weight, getattr(layer, "groups", 1)  # type: ignore[assignment]
        kind = type(layer).__name__
    else:
        weight, groups = layer
        kind = "convolution" if weight.ndim > 2 else "linear"
    is_conv = weight.ndim > 2
    what = f"the model's first layer {name!r} ({kind})"
    direct = value is x or value.shape == x.shape
    got = "x" if direct else f"x of shape {tuple(x.shape)} becomes {tuple(value.shape)}, which"
    if is_conv:
        rank, channels = weight.ndim, int(weight.shape[1]) * int(groups)
        layout = "(N, C, H, W)" if rank == 4 else f"rank-{rank} (N, C, ...)"
        if value.ndim != rank:
            hint = " Add the batch dimension with x.unsqueeze(0)." if value.ndim == rank - 1 else ""
            raise InputError(
                f"x has shape {tuple(x.shape)} (rank {x.ndim}); {what} expects {layout} "
                f"input{'' if direct else f', but gets shape {tuple(value.shape)}'}.{hint}"
            )
        if value.shape[1] != channels:
            raise InputError(
                f"{got} has {value.shape[1]} channels but {what} expects {channels}; pass input "
                f"with the channels the model was built for (e.g. convert grey-scale to RGB, or "
                "drop an alpha channel)."
            )
    elif value.shape[-1] != weight.shape[-1]:
        raise InputError(
            f"{got} has {value.shape[-1]} features but {what} expects {weight.shape[-1]}; "
            "flatten or resize the input to match."
        )


def check_targets(target: Any, n: int, n_classes: int, device: torch.device) -> Tensor:
    """Targets as a LongTensor (N,): an int applies to every sample, a sequence gives one each."""
    if isinstance(target, Tensor):
        if target.is_floating_point() or target.dtype == torch.bool or target.ndim > 1:
            raise InputError(
                f"target must be an int or N integers, got a {target.dtype} tensor of shape "
                f"{tuple(target.shape)}; pass e.g. logits.argmax(1)."
            )
        values = target.reshape(-1).tolist()
    elif isinstance(target, bool):
        raise InputError("target must be an int class index, got a bool.")
    elif isinstance(target, numbers.Integral):
        values = [int(target)] * n
    elif isinstance(target, Sequence) or hasattr(target, "tolist"):
        values = list(target.tolist() if hasattr(target, "tolist") else target)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise InputError(f"target must hold integer class indices, got {values!r}.")
    else:
        raise InputError(
            f"target must be an int or a sequence of N ints, got {type(target).__name__}."
        )
    if len(values) == 1 and n > 1 and isinstance(target, Tensor) and target.ndim == 0:
        values = values * n
    if len(values) != n:
        raise InputError(
            f"got {len(values)} targets for a batch of {n} samples; pass one int for all "
            "samples or exactly one target per sample."
        )
    bad = [v for v in values if not 0 <= v < n_classes]
    if bad:
        raise InputError(
            f"target {bad[0]} is out of range: the model has {n_classes} classes, so targets "
            f"must lie in 0..{n_classes - 1}."
        )
    return torch.tensor(values, dtype=torch.long, device=device)


def check_contrast(contrast: Any, dual_seed: str) -> str | int:
    """Normalise ``contrast`` ("lrp", "clrp1", "clrp2", "sglrp" or a class index)."""
    if isinstance(contrast, bool) or not isinstance(contrast, (str, int)):
        raise ConfigError(
            f"contrast must be one of {', '.join(CONTRASTS)} or an int class index, "
            f"got {contrast!r}."
        )
    if isinstance(contrast, str):
        key = contrast.lower()
        if key not in CONTRASTS:
            close = difflib.get_close_matches(key, CONTRASTS, n=2)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ConfigError(
                f"unknown contrast/variant {contrast!r}.{hint} Choose one of "
                f"{', '.join(CONTRASTS)}, or an int class index for 'target rather than B'."
            )
        contrast = key
    if dual_seed not in DUAL_SEEDS:
        raise ConfigError(f"unknown dual_seed {dual_seed!r}; choose 'uniform' or 'logits'.")
    if dual_seed == "logits" and contrast != "clrp1":
        raise ConfigError(
            f"dual_seed='logits' applies to contrast 'clrp1' only, not {contrast!r}; "
            "leave dual_seed='uniform'."
        )
    return contrast


def check_pairwise(contrast: str | int, targets: Tensor, n_classes: int) -> None:
    """The pairwise class must exist and differ from every target."""
    if isinstance(contrast, str):
        return
    if not 0 <= contrast < n_classes:
        raise InputError(
            f"contrast class {contrast} is out of range; the model has {n_classes} classes "
            f"(0..{n_classes - 1})."
        )
    if bool((targets == contrast).any()):
        raise InputError(
            f"contrast class {contrast} equals the target; 'target rather than B' needs a "
            "different class B."
        )


def check_kinds(kinds: Any, contrast: str | int | None) -> tuple[str, ...]:
    """Normalise ``kinds``: a non-empty subset of ("target", "dual", "contrast")."""
    if isinstance(kinds, str):
        kinds = (kinds,)
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds or len(set(kinds)) != len(kinds):
        raise ConfigError(
            f"kinds must be a non-empty subset of {KINDS} without repeats, got {kinds!r}."
        )
    if contrast in ("lrp", None) and kinds != ("target",):
        raise ConfigError(
            f"plain LRP has only the 'target' map, but kinds={kinds!r} was asked; pass "
            "kinds=('target',) or choose a contrast such as 'clrp1'."
        )
    return kinds


def check_layer(name: Any, known: Sequence[str]) -> str:
    """``name`` if it is a known layer; else LayerNotFoundError with the closest names."""
    if isinstance(name, str) and name in known:
        return name
    close = difflib.get_close_matches(str(name), list(known), n=3, cutoff=0.5)
    hint = f" Closest: {', '.join(map(repr, close))}." if close else ""
    raise LayerNotFoundError(
        f"layer {name!r} not found.{hint} Use one of engine.layer_names() "
        f"({len(known)} layers, e.g. {', '.join(list(known)[:4])})."
    )


def check_channel(channel: Any, n_channels: int, layer: str) -> int:
    """A channel index in range for ``layer``."""
    if isinstance(channel, bool) or not isinstance(channel, int):
        raise InputError(f"channel must be an int, got {channel!r}.")
    if not 0 <= channel < n_channels:
        raise InputError(
            f"channel {channel} is out of range for layer {layer!r}, which has {n_channels} "
            f"channels (0..{n_channels - 1})."
        )
    return channel


@contextmanager
def first_layer_checked(model: nn.Module, x: Tensor) -> Iterator[None]:
    """Check the input of the first Conv/Linear module the forward pass calls, with a
    pre-hook on each of them (:func:`check_first_layer`); the hooks are removed on exit."""
    from .hookids import reserve_hook_ids
    from .ops import LINEAR_TYPES

    done = False

    def hook(name: str) -> Any:
        def check(module: nn.Module, args: tuple[Any, ...]) -> None:
            nonlocal done
            if not done and args and isinstance(args[0], Tensor):
                done = True
                check_first_layer(name, module, args[0], x)

        return check

    reserve_hook_ids(model)
    handles = [
        module.register_forward_pre_hook(hook(name))
        for name, module in model.named_modules()
        if isinstance(module, LINEAR_TYPES)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def eval_semantics(model: nn.Module, stacklevel: int = 4) -> Iterator[None]:
    """Run the model in eval mode (as the relevance engine does), then restore every flag.

    A model in training mode gets a ``UserWarning``: dropout and BatchNorm batch statistics
    would make a map depend on the batch and on chance. The model's lock is held throughout, so
    two threads never save and restore the flags of one model at the same time.
    """
    with model_lock(model):
        flags = [(module, module.training) for module in model.modules()]
        if any(training for _, training in flags):
            warnings.warn(
                "the model is in training mode; it is explained in eval mode (dropout off, "
                "BatchNorm running statistics) and its training flags are restored afterwards. "
                "Call model.eval() to silence this warning.",
                UserWarning,
                stacklevel=stacklevel,
            )
        model.eval()
        try:
            yield
        finally:
            for module, training in flags:
                module.training = training
