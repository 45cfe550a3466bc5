"""Names and default rule kinds of the tensor operations seen by the op-level recorder.

Every torch call made during the engine's forward pass, outside a module that carries a
module-level rule, is looked up here by its *base name*: in-place and operator forms share it
(``add``, ``add_``, ``__add__``, ``__iadd__`` and ``torch.add`` are all ``add``).

Kinds
-----
``route``
    The plain gradient routes relevance correctly (0/1 routing: views, reshapes, cat, split,
    getitem, pad, channel shuffle, dropout in eval, sorting, and max pooling and other selections
    (max, min, topk), which are winner-takes-all).
``pass``
    Element-wise, relevance passes unchanged (activations; norms with the normaliser held
    constant; products, sums and quotients with a constant).
``gate``
    As ``pass``, and the output is marked as a gate (sigmoid, hard-sigmoid, softmax).
``zrule``
    Parameter-free linear maps (average pooling, ``mean``, ``sum``): the z rule.
``add``, ``mul``, ``div``
    Arithmetic: with one input-dependent operand ``pass``; with two, ``add``/``sub`` split in
    proportion (z rule), ``mul`` gives everything to the signal (the gate is constant) and
    ``div`` to the numerator (the denominator is a constant normaliser).
``linear``
    ``conv1d/2d/3d`` and ``linear``: the Conv/Linear rule of the preset.
``norm``
    Normalisations: ``pass``; an eval-mode ``batch_norm`` right after a Conv/Linear is merged.
``resample``
    ``interpolate`` / ``upsample``: ``route`` in the nearest modes (each output copies one
    input), the z rule in the others (a fixed linear map of the input).
``stat``
    Statistics that only scale a signal (``norm``, ``vector_norm``, ``std``, ``var``): held
    constant, as a normaliser is (their result is not input-dependent for relevance; a
    statistic used as a value instead leaks relevance, which the conservation guard reports).
``addcmul``
    ``input + value * t1 * t2``: ``pass`` with one input-dependent operand; the z rule when the
    operands it is linear in jointly are ``input`` and one factor.
``const``
    The result does not depend on the input's values (``zeros_like``, ``detach``, ...).

Operations in :data:`SHAPE_ARGUMENT` read only the shape or dtype of their second operand
(``expand_as``, ``view_as``, ``type_as``): only their first operand carries relevance.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

_ROUTE = """
view reshape permute flatten unflatten transpose t contiguous clone cat concat concatenate stack
hstack vstack split split_with_sizes tensor_split chunk unbind narrow getitem select index_select
squeeze unsqueeze expand expand_as repeat tile roll flip channel_shuffle native_channel_shuffle
pixel_shuffle pixel_unshuffle pad to type float double half bfloat16 cpu cuda view_as reshape_as
movedim moveaxis swapaxes swapdims dropout dropout1d dropout2d dropout3d alpha_dropout
feature_alpha_dropout feature_dropout max_pool1d max_pool2d max_pool3d max_pool1d_with_indices
max_pool2d_with_indices max_pool3d_with_indices adaptive_max_pool1d adaptive_max_pool2d
adaptive_max_pool3d max amax maximum fmax setitem copy identity T mT type_as broadcast_to
upsample_nearest repeat_interleave unfold min amin minimum fmin sort msort topk
"""
_PASS = """
relu relu6 hardtanh leaky_relu elu selu celu gelu silu hardswish mish softplus threshold clamp clip
clamp_min clamp_max tanh prelu rrelu neg negative positive log_softmax normalize pow square
sqrt rsqrt exp abs
"""
_GATE = "sigmoid hardsigmoid softmax"
_ZRULE = """
avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d
mean sum fold
"""
_NORM = "layer_norm group_norm instance_norm batch_norm rms_norm local_response_norm"
_LINEAR = "conv1d conv2d conv3d linear"
_RESAMPLE = "interpolate upsample upsample_bilinear"
_STAT = "norm vector_norm linalg_vector_norm std var frobenius_norm"
_CONST = """
zeros_like ones_like empty_like full_like rand_like randn_like randint_like new_zeros new_ones
new_full new_empty new_tensor detach data
"""
_ARITH = {
    "add": "add",
    "sub": "add",
    "rsub": "add",
    "mul": "mul",
    "div": "div",
    "true_divide": "div",
}

KINDS: dict[str, str] = {
    **{n: "route" for n in _ROUTE.split()},
    **{n: "pass" for n in _PASS.split()},
    **{n: "gate" for n in _GATE.split()},
    **{n: "zrule" for n in _ZRULE.split()},
    **{n: "norm" for n in _NORM.split()},
    **{n: "linear" for n in _LINEAR.split()},
    **{n: "const" for n in _CONST.split()},
    **{n: "resample" for n in _RESAMPLE.split()},
    **{n: "stat" for n in _STAT.split()},
    "addcmul": "addcmul",
    **_ARITH,
}
#: ops whose second operand gives only a shape or dtype (it carries no relevance)
SHAPE_ARGUMENT = frozenset({"expand_as", "view_as", "reshape_as", "type_as"})
MAX_POOL_OPS = frozenset(n for n in _ROUTE.split() if "max_pool" in n)
#: the module class whose rule an op-level Conv/Linear call takes by default
LINEAR_CLASSES: dict[str, type[nn.Module]] = {
    "conv1d": nn.Conv1d,
    "conv2d": nn.Conv2d,
    "conv3d": nn.Conv3d,
    "linear": nn.Linear,
}
#: modules whose output is a gate (its product with a signal gives all relevance to the signal)
GATE_MODULES = (nn.Sigmoid, nn.Hardsigmoid, nn.Softmax)

_DUNDER = {
    "iadd": "add_",
    "isub": "sub_",
    "imul": "mul_",
    "itruediv": "div_",
    "idiv": "div_",
    "radd": "add",
    "rmul": "mul",
    "rtruediv": "rdiv",
    "rdiv": "rdiv",
    "truediv": "div",
}


@functools.lru_cache(maxsize=4096)
def _parse(raw: str) -> tuple[str, bool]:
    name = raw
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        name = _DUNDER.get(name, name)
    inplace = (name.endswith("_") and not name.startswith("_")) or name == "setitem"
    return name.rstrip("_").lstrip("_") or raw, inplace


def op_name(func: Callable[..., Any]) -> tuple[str, bool]:
    """Base name of a torch function and whether this form works in place."""
    raw = getattr(func, "__name__", type(func).__name__)
    if raw == "__get__":  # a tensor attribute such as .data or .T
        raw = getattr(getattr(func, "__self__", None), "__name__", raw)
    return _parse(raw)


def is_inplace(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether this call writes into its first argument (``add_``, ``F.relu(x, inplace=True)``)."""
    if op_name(func)[1]:
        return True
    if "inplace" in kwargs:
        return bool(kwargs["inplace"])
    position = _inplace_position(func)
    return position is not None and len(args) > position and bool(args[position])


@functools.lru_cache(maxsize=512)
def _inplace_position(func: Callable[..., Any]) -> int | None:
    try:
        params = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return None
    return params.index("inplace") if "inplace" in params else None
