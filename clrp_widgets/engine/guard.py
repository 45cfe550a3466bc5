"""Checks around one engine call: the model and input it is given, and conservation after it."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Collection, Sequence

import torch
from torch import Tensor, nn

from .errors import ConfigError, ConservationWarning, InputError

#: relative drift (of the explained output's absolute seed sum) that triggers a warning, at any
#: size of that output. Rounding costs about 2e-7 of it per layer in float32 (ResNet-50,
#: DenseNet-121, EfficientNet-B0, ConvNeXt-T at 224 px) and 1e-8 in float64, so 1e-4 leaves a
#: margin of 500x; z+'s stabiliser (eps = 1e-9) loses eps / (z+ + eps) of an output's relevance,
#: which reaches 1e-4 only for outputs whose positive evidence is below 1e-5 (a logit of 2e-4
#: whose evidence is mostly negative, say): such a map is reported, naming the layer.
TOLERANCE = 1e-4


def unwrap_compiled(model: nn.Module) -> nn.Module:
    """The eager module behind a ``torch.compile``d one (explained eagerly: hooks and op-level
    rules need the Python forward; the compiled graph would bypass them)."""
    orig = getattr(model, "_orig_mod", None)
    return orig if isinstance(orig, nn.Module) else model


def check_model_input(model: nn.Module, x: Tensor) -> None:
    """Refuse calls that cannot give a correct map: inference mode, dtype or device mismatch."""
    if torch.is_inference_mode_enabled():
        raise ConfigError(
            "the engine was called inside torch.inference_mode(), where autograd is off and "
            "relevance cannot propagate; call it outside that block (inside torch.no_grad() is "
            "fine, the engine enables gradients itself and never changes weights)."
        )
    tensors = itertools.chain(model.parameters(), model.buffers())  # lazily: the first one
    reference = next((t for t in tensors if t.is_floating_point()), None)
    if reference is None:
        return
    if reference.is_inference():
        raise ConfigError(
            "the model's parameters were created under torch.inference_mode() and cannot take "
            "part in autograd; load or build the model outside inference mode."
        )
    if x.dtype != reference.dtype:
        raise InputError(
            f"x has dtype {x.dtype} but the model's parameters are {reference.dtype}; pass "
            f"x.to({reference.dtype}) (or convert the model with model.to({x.dtype}))."
        )
    if x.device != reference.device:
        raise InputError(
            f"x is on {x.device} but the model is on {reference.device}; pass "
            f"x.to('{reference.device}')."
        )


def check_ledger(
    records: Sequence[tuple[str, Tensor, Tensor]],
    scale: Tensor,
    kind: str,
    input_map: Tensor | None,
    seed_total: Tensor | None,
    exempt: str | None = None,
    absorbing: Collection[str] = (),
) -> None:
    """Warn once if a layer, or the whole pass, lost or gained relevance beyond the tolerance.

    ``records`` hold per-sample sums ``(layer, relevance entering, relevance handed down)``;
    ``scale`` is the per-sample absolute seed sum the tolerance is relative to. The ``exempt``
    layer (the logit layer) may drop seed it cannot attribute (a class with no positive
    evidence under z+, seeded by CLRP's dual): that is the seed's choice, not a leak. The
    ``absorbing`` nodes hand some relevance to constant tokens concatenated to the signal
    (class, distillation and register tokens), where it stays, as the design says.
    """
    with torch.no_grad():
        tol = TOLERANCE * scale.abs().to(torch.float64)
        expected = None if seed_total is None else seed_total.to(torch.float64)
        for name, out_sum, in_sum in records:
            drift = out_sum.to(torch.float64) - in_sum.to(torch.float64)
            if name == exempt or name in absorbing:
                expected = None if expected is None else expected - drift
            elif bool((drift.abs() > tol).any()):
                _warn(name, _relative(drift, tol), kind)
                return
        if input_map is None or expected is None:
            return
        got = input_map.reshape(input_map.shape[0], -1).sum(1).to(torch.float64)
        if bool(((got - expected).abs() > tol).any()):
            _warn(None, _relative(got - expected, tol), kind)


def _relative(drift: Tensor, tol: Tensor) -> float:
    return float((drift.abs() / tol.clamp(min=1e-300)).max()) * TOLERANCE


def _warn(name: str | None, relative: float, kind: str) -> None:
    where = (
        f"at layer {name!r}"
        if name
        else "between the output and the input, in operations routed by the plain gradient"
    )
    warnings.warn(
        f"relevance is not conserved {where}: the {kind!r} map lost or gained {relative:.2g} of "
        f"the explained output (tolerance {TOLERANCE:g}) under a conservative preset, so the map "
        "may be wrong. Check that layer's rule (override it with overrides={...}), or report the "
        "model so that its operations get a rule.",
        ConservationWarning,
        stacklevel=7,  # _warn, check_ledger, _guard, __exit__, engine method, lock, caller
    )
