"""Refusals of an operation without a rule, with advice that runs on the model that raised it.

The advice is found by probing the refused call on its own operands (a few evaluations of the
op, only on this error path):

- **element-wise** in its one input-dependent operand (changing one entry changes only that
  entry of the result): ``Pass()``, relevance passes unchanged, as for an activation;
- **linear** in its input-dependent operands jointly (``f(a + b) = f(a) + f(b)``,
  ``f(2a) = 2 f(a)``): ``Norm()``, the z rule, conservative;
- **bilinear** in two operands (linear in each, as a product): ``ProductRule()``, AttnLRP's
  uniform rule, conservative;
- **element-wise in the first of two operands** (``a ** b``, ``torch.where``-like blends):
  ``Gate(gate=1)``, the second operand is held constant as a gate and relevance passes to the
  first unchanged;
- anything else whose gradient is finite on this call (of the first result, for ops returning
  ``(values, indices)``): ``Gradient()``, which routes relevance as
  the gradient does (exact only for operations that move or select values; the conservation
  guard reports a loss); with no finite gradient, no rule is suggested and the message says to
  rewrite the operation.

The error's ``fix`` holds the advice as an ``overrides=`` mapping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .errors import UnsupportedLayerError
from .rules import Gate, Gradient, Norm, Pass, Rule

_WHY = {
    "Pass": "it is element-wise, so relevance passes through it unchanged",
    "Norm": "it is linear in its input, so the z rule fits (conservative)",
    "ProductRule": "it is a product of its two inputs, so AttnLRP's uniform rule fits "
    "(each input gets half of its epsilon-rule share; conservative)",
    "Gate": "it is element-wise in its first operand, so the second is held constant as a gate "
    "and relevance passes to the first unchanged (as through an activation)",
    "Gradient": "it is neither element-wise nor linear, so the nearest rule that runs routes "
    "relevance as the gradient does (exact only if it moves or selects values; the "
    "conservation guard reports a loss)",
}


def refusal(op: Any, why: str, ruleset: Any) -> UnsupportedLayerError:
    """The error for refused call ``op`` (an :class:`~.opmode.Op`) with advice that runs on it."""
    where = f"module {op.path!r}" if op.path else "the model's own forward"
    rule = suggestion(op.call(), [t.detach() for t in op.signals])
    head = (
        f"no relevance rule for operation {op.name!r} ({why}), called in {where}; its node is "
        f"{op.node_name!r}."
    )
    if rule is None:
        return UnsupportedLayerError(
            f"{head} Probed on this call, it gives no floating-point tensor with a finite "
            "gradient the engine could propagate through: rewrite the operation (e.g. select "
            ".values of a tuple result before the model uses it), or wrap it in a module and "
            "give that module a rule."
        )
    label = type(rule).__name__
    written = "Gate(gate=1)" if label == "Gate" else f"{label}()"
    every = _every_call(op.name, written)
    origin = "clrp_widgets.engine" if label == "ProductRule" else "clrp_widgets.engine.rules"
    return UnsupportedLayerError(
        f"{head} Probed on this call, {_WHY[label]}: extend the preset with "
        f"overrides={{{op.node_name!r}: {written}}}{every} (in cw.Explainer, cw.lrp, cw.clrp "
        f"and RelevanceEngine; {label} from {origin}). Or rewrite the operation.",
        fix={op.node_name: rule},
    )


def suggestion(call: Callable[..., Any], values: list[Tensor]) -> Rule | None:
    """The rule for ``call(*values)`` that the module docstring describes (None: no tensor)."""
    from .attention import ProductRule

    try:
        with torch.no_grad():
            out = call(*values)
            if not isinstance(out, Tensor) or not out.is_floating_point():
                return Gradient() if _finite_gradient(call, values) else None
            if len(values) == 1 and out.shape == values[0].shape and _elementwise(call, values):
                return Pass()
            if _homogeneous(call, values, list(range(len(values)))) and _additive(call, values):
                return Norm()
            if len(values) == 2 and all(_homogeneous(call, values, [i]) for i in (0, 1)):
                return ProductRule()
            if len(values) == 2 and out.shape == values[0].shape:
                if _elementwise(lambda a: call(a, values[1]), values[:1]):
                    return Gate(gate=1)
    except Exception:  # a probe the op does not accept: the gradient's probe decides
        pass
    return Gradient() if _finite_gradient(call, values) else None


def _finite_gradient(call: Callable[..., Any], values: list[Tensor]) -> bool:
    """Whether the op's output is one floating tensor whose vector-Jacobian product is finite."""
    try:
        with torch.enable_grad():
            leaves = [v.detach().requires_grad_(True) for v in values]
            out = call(*leaves)
            if isinstance(out, (tuple, list)) and out:  # (values, indices): the values
                out = out[0]
            if not isinstance(out, Tensor) or not out.is_floating_point():
                return False
            grads = torch.autograd.grad(out, leaves, torch.ones_like(out), allow_unused=True)
    except Exception:
        return False
    return all(g is None or bool(torch.isfinite(g).all()) for g in grads)


def _every_call(name: str, label: str) -> str:
    """The advice for every call of op ``name`` (``label`` is the rule as written)."""
    for owner, prefix in ((torch, "torch"), (torch.nn.functional, "torch.nn.functional")):
        if hasattr(owner, name):
            return f", or {{{prefix}.{name}: {label}}} for every call of it"
    return ""


def _close(a: Tensor, b: Tensor) -> bool:
    tol = 1e-9 if a.dtype == torch.float64 else 1e-4
    scale = max(float(a.abs().max()), float(b.abs().max()), 1e-30)
    return a.shape == b.shape and bool(((a - b).abs() <= tol * scale).all())


def _noise(v: Tensor, seed: int) -> Tensor:
    g = torch.Generator(device=v.device).manual_seed(seed)
    scale = float(v.abs().mean()) or 1.0
    return torch.randn(v.shape, generator=g, dtype=v.dtype, device=v.device) * scale


def _elementwise(call: Callable[..., Any], values: list[Tensor]) -> bool:
    """Changing one entry changes no other entry of the result (three random entries)."""
    (v,) = values
    base = call(v)
    g = torch.Generator(device=v.device).manual_seed(0)
    for i in torch.randint(v.numel(), (3,), generator=g).tolist():
        w = v.clone()
        w.view(-1)[i] += float(v.abs().mean()) or 1.0
        changed = (call(w) != base).view(-1)
        changed[i] = False
        if bool(changed.any()):
            return False
    return True


def _homogeneous(call: Callable[..., Any], values: list[Tensor], which: list[int]) -> bool:
    """``f`` scales by 2 when the operands ``which`` are doubled."""
    doubled = [2 * v if i in which else v for i, v in enumerate(values)]
    return _close(call(*doubled), 2 * call(*values))


def _additive(call: Callable[..., Any], values: list[Tensor]) -> bool:
    """``f(a + b) = f(a) + f(b)`` for random ``b``."""
    noise = [_noise(v, seed) for seed, v in enumerate(values)]
    summed = [v + n for v, n in zip(values, noise, strict=True)]
    return _close(call(*summed), call(*values) + call(*noise))
