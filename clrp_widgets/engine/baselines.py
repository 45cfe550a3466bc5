"""Gradient-based baselines: gradient, gradient×input, DeConvNet, Guided Backprop and Grad-CAM.

Torch only. Every function takes ``model`` (a classifier returning logits), ``x`` of shape
(N, C, H, W) and ``target`` (an int or a sequence of N ints), validates them like the relevance
engine, explains a model in training mode in eval semantics (with a warning, like the engine),
and leaves the model bit-identical, with no hooks, also when it raises.

DeConvNet and Guided Backprop change the backward pass of every ``torch.nn.ReLU`` *module* in
the model; a ``torch.nn.functional.relu`` called inside a custom ``forward`` keeps its plain
gradient. Gradients are taken with ``torch.autograd.grad``, so no ``.grad`` field is touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from clrp_widgets import methods
from clrp_widgets.engine.errors import ConfigError
from clrp_widgets.engine.hookids import reserve_hook_ids
from clrp_widgets.engine.outputs import OutputSelector, select_logits
from clrp_widgets.engine.validation import (
    check_input,
    check_layer,
    check_targets,
    eval_semantics,
    first_layer_checked,
)

Target = int | Sequence[int] | torch.Tensor

BASELINES = methods.BASELINES


class _ModifiedReLU(torch.autograd.Function):
    """ReLU whose backward pass is the DeConvNet or Guided Backprop rule."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, guided: bool) -> torch.Tensor:
        ctx.guided = guided
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        grad = grad.clamp(min=0)
        if ctx.guided:
            grad = grad * (x > 0)
        return grad, None


@contextmanager
def _modified_relus(model: nn.Module, guided: bool) -> Iterator[None]:
    """Route every ``nn.ReLU`` module's output through :class:`_ModifiedReLU`.

    A pre-hook keeps the pre-activation and hands the module a detached copy (so an in-place ReLU
    cannot overwrite it); the forward hook replaces the module's output by the modified ReLU of
    the kept pre-activation. Hooks are removed on exit, also after an exception.
    """
    handles = []
    pending: dict[int, list[torch.Tensor]] = {}

    def keep_input(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        pending.setdefault(id(module), []).append(args[0])
        return (args[0].detach().clone(),)

    def replace_output(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        return _ModifiedReLU.apply(pending[id(module)].pop(), guided)

    try:
        reserve_hook_ids(model)
        for module in model.modules():
            if isinstance(module, nn.ReLU):
                handles.append(module.register_forward_pre_hook(keep_input))
                handles.append(module.register_forward_hook(replace_output))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _target_score(output: Any, target: Target, n: int, selector: OutputSelector) -> torch.Tensor:
    """Sum over samples of each sample's target logit (samples do not interact in eval mode)."""
    logits = select_logits(output, selector, n)
    targets = check_targets(target, n, logits.shape[1], logits.device)
    return logits.gather(1, targets[:, None]).sum()


def _input_gradient(
    model: nn.Module,
    x: torch.Tensor,
    target: Target,
    guided: bool | None = None,
    output: OutputSelector = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the target logits w.r.t. ``x`` (ReLUs modified when ``guided`` is not None)."""
    x = check_input(x)
    with eval_semantics(model):
        leaf = x.detach().clone().requires_grad_(True)
        with torch.enable_grad(), first_layer_checked(model, leaf):
            if guided is None:
                logits = model(leaf)
            else:
                with _modified_relus(model, guided):
                    logits = model(leaf)
            score = _target_score(logits, target, len(x), output)
            (grad,) = torch.autograd.grad(score, leaf)
    return grad, leaf.detach()


def gradient(
    model: nn.Module, x: torch.Tensor, target: Target, output: OutputSelector = None
) -> torch.Tensor:
    """Gradient of the target logit with respect to the input.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier returning logits (N, classes).
    x : torch.Tensor
        Input batch (N, C, H, W), floating point.
    target : int or sequence of int
        One class for the whole batch or one per sample.
    output : str, int or callable, optional
        Where the class scores are in a model output that is not a tensor
        (:mod:`~clrp_widgets.engine.outputs`).

    Returns
    -------
    torch.Tensor
        Same shape as ``x``.
    """
    return _input_gradient(model, x, target, output=output)[0]


def gradient_x_input(
    model: nn.Module, x: torch.Tensor, target: Target, output: OutputSelector = None
) -> torch.Tensor:
    """Gradient times input, elementwise (same parameters and shape as :func:`gradient`)."""
    grad, leaf = _input_gradient(model, x, target, output=output)
    return grad * leaf


def deconvnet(
    model: nn.Module, x: torch.Tensor, target: Target, output: OutputSelector = None
) -> torch.Tensor:
    """DeConvNet (Zeiler & Fergus): ReLUs pass only the positive part of the backward signal.

    Same parameters and shape as :func:`gradient`.
    """
    return _input_gradient(model, x, target, guided=False, output=output)[0]


def guided_backprop(
    model: nn.Module, x: torch.Tensor, target: Target, output: OutputSelector = None
) -> torch.Tensor:
    """Guided Backprop (Springenberg et al.): gradient masked by positive input and signal.

    Same parameters and shape as :func:`gradient`.
    """
    return _input_gradient(model, x, target, guided=True, output=output)[0]


def last_conv_name(model: nn.Module) -> str:
    """Name of the last ``nn.Conv2d`` module in registration order (Grad-CAM's default layer)."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if not names:
        raise ConfigError(
            "Grad-CAM needs a convolutional layer, but the model has no nn.Conv2d; "
            "pass layer=<module name> of a layer with (N, C, h, w) output."
        )
    return names[-1]


def gradcam(
    model: nn.Module,
    x: torch.Tensor,
    target: Target,
    layer: str | None = None,
    upsample: bool = True,
    output: OutputSelector = None,
) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al.): ReLU(Σ_k α_k A_k) with α_k the mean gradient of channel k.

    Parameters
    ----------
    model, x, target, output
        As in :func:`gradient`.
    layer : str, optional
        Module name whose (N, K, h, w) output is A; default: the last ``nn.Conv2d``.
    upsample : bool
        Bilinearly upsample the map to the input's (H, W) (``align_corners=False``).

    Returns
    -------
    torch.Tensor
        (N, H, W) when ``upsample``, else (N, h, w); non-negative.
    """
    x = check_input(x)
    modules = {name: module for name, module in model.named_modules() if name}
    name = last_conv_name(model) if layer is None else check_layer(layer, list(modules))
    kept: list[torch.Tensor] = []

    def keep_output(module: nn.Module, args: Any, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise ConfigError(
                f"Grad-CAM needs a layer with (N, K, h, w) output; {name!r} gives "
                f"{getattr(output, 'shape', type(output))}. Pick a convolution or pooling layer."
            )
        kept.append(output)
        return output.clone()  # a later in-place ReLU must not overwrite the kept activation

    with eval_semantics(model), torch.enable_grad():
        reserve_hook_ids(model)
        handle = modules[name].register_forward_hook(keep_output)
        leaf = x.detach().clone().requires_grad_(True)
        try:
            with first_layer_checked(model, leaf):
                logits = model(leaf)
        finally:
            handle.remove()
        score = _target_score(logits, target, len(x), output)
        activation = kept[-1]
        (grad,) = torch.autograd.grad(score, activation)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = (weights * activation.detach()).sum(dim=1).clamp(min=0)
    if upsample:
        cam = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
        cam = cam[:, 0]
    return cam


_PIXEL_BASELINES: dict[str, Callable[..., torch.Tensor]] = {
    "gradient": gradient,
    "gradient_x_input": gradient_x_input,
    "deconvnet": deconvnet,
    "guided_backprop": guided_backprop,
}


def baseline(
    model: nn.Module,
    x: torch.Tensor,
    target: Target,
    method: str,
    layer: str | None = None,
    output: OutputSelector = None,
) -> torch.Tensor:
    """Run a baseline by name (one of :data:`BASELINES`).

    Returns the input-shaped map for pixel methods and the upsampled (N, H, W) map for
    ``"gradcam"`` (``layer`` is only used by Grad-CAM).
    """
    if method == "gradcam":
        return gradcam(model, x, target, layer=layer, output=output)
    if method not in _PIXEL_BASELINES:
        raise ConfigError(f"unknown baseline {method!r}; choose one of {', '.join(BASELINES)}.")
    if layer is not None:
        raise ConfigError(f"layer= is only used by 'gradcam', not by {method!r}; drop it.")
    return _PIXEL_BASELINES[method](model, x, target, output=output)
