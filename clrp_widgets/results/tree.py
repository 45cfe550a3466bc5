"""Build the labelled result tree (DESIGN §3) from the engine's output.

Layout of the returned ``xarray.DataTree``::

    /                  logits, probs (sample, class); coords class, class_name, target (sample)
                       attrs method, rules, contrast, dual_seed, input_bounds, model, version,
                       layer_order, seed_sum
    /input             relevance (kind, sample, color, y, x), heatmap (kind, sample, y, x)
    /layers/<module>   relevance (kind, sample, channel, y, x) or (kind, sample, unit),
                       activation (sample, channel, y, x) or (sample, unit),
                       neuron_relevance (kind, sample, channel)

``channel`` is always the layer's neuron axis (``clrp_widgets.engine.axes``): a conv channel,
a hidden unit of a token or channels-last layer, or an attention head (attrs ``unit_kind``:
"channel", "unit" or "head"; ``layout``: the tensor's own axis order, e.g. ``["sample",
"token", "channel"]``). The other axes are ``y, x`` (conv and channels-last layers), ``token``
(with ``token_kind``, ``patch_y``, ``patch_x`` coordinates on a patch grid) or ``query, key``
/ ``token, head_dim`` (attention); ``neuron_relevance`` sums over all of them. Where the tokens
lie on a patch grid, attr ``patch_grid`` is ``[gy, gx]``: the last ``gy * gx`` tokens of the
``token`` / ``key`` axis, row by row; the extra tokens before them (the class token) have none.

Node names are the torch module names, dots included (``tree["layers/features.28"]``); the
only rewrites are ``"/"`` to ``"∕"`` (U+2215) and the root module ``""`` to ``"(model)"``, see
:func:`node_name`. Arrays are wrapped, not copied, where the engine's tensors live on the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import xarray as xr

from clrp_widgets.engine.errors import ConfigError
from clrp_widgets.results.attrs import encode_attrs

ROOT_NODE = "(model)"
SLASH_STANDIN = "\u2215"
_SPATIAL = {0: (), 1: ("x",), 2: ("y", "x"), 3: ("z", "y", "x")}


class LayerCaptureLike(Protocol):
    """What the builder reads from one captured layer (the engine's ``LayerCapture``)."""

    activation: Any  # (N, ...) tensor: the module's output
    relevance: Any  # (K, N, ...) tensor: relevance at the module's output


class EngineOutputLike(Protocol):
    """What the builder reads from the engine's ``EngineOutput``."""

    logits: Any  # (N, classes)
    targets: Any  # (N,)
    kinds: tuple[str, ...]
    input: Any  # (K, N, C, H, W)
    layers: Mapping[str, LayerCaptureLike]
    seed_sums: Any  # (K, N)
    # optional ``axes``: {layer: engine.axes.LayerAxes}, where each layer's neurons are


def node_name(module_name: str) -> str:
    """DataTree node name of a torch module name (identity except ``""`` and ``"/"``)."""
    return module_name.replace("/", SLASH_STANDIN) if module_name else ROOT_NODE


def module_name(name: str) -> str:
    """Inverse of :func:`node_name`."""
    return "" if name == ROOT_NODE else name.replace(SLASH_STANDIN, "/")


def as_numpy(array: Any) -> np.ndarray:
    """A numpy view of a (detached, CPU) torch tensor or array-like; copies only off the CPU."""
    if hasattr(array, "detach"):
        array = array.detach()
        if array.device.type != "cpu":
            array = array.cpu()
        return array.numpy()
    return np.asarray(array)


OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")


def probabilities(logits: np.ndarray, activation: str = "softmax") -> np.ndarray:
    """Class probabilities (sample, class) from logits, by softmax or per-class sigmoid."""
    if activation == "sigmoid":
        e = np.exp(-np.abs(logits))  # stable on both tails
        return np.where(logits >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(logits.dtype)
    if activation != "softmax":
        raise ConfigError(
            f"unknown output activation {activation!r}; use one of {OUTPUT_ACTIVATIONS} "
            "(softmax for single-label classifiers, sigmoid for multi-label ones)."
        )
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(logits.dtype, copy=False)


def _unit_dims(ndim: int) -> tuple[str, ...]:
    """Dims of one sample's values: ("unit",) for flat outputs, else ("channel", *spatial)."""
    if ndim == 1:
        return ("unit",)
    if ndim - 1 not in _SPATIAL:  # attention internals, e.g. MaxViT's (N, G, P, heads, I, J)
        return ("channel", *(f"axis{i}" for i in range(2, ndim + 1)))
    return ("channel", *_SPATIAL[ndim - 1])


def _ledger(
    partial_sums: np.ndarray, seed_sum: np.ndarray, scale: float, kinds: Sequence[str]
) -> dict[str, float | None]:
    """Σ relevance / Σ seed per kind; None where the seed sums to zero (at float precision).

    ``partial_sums`` (kind, ...) is the relevance already summed over some axes (the neuron
    relevance or the heatmap), so the full maps are not read twice.
    """
    totals = partial_sums.reshape(len(kinds), -1).sum(axis=1, dtype=np.float64)
    return {
        kind: float(total / seed) if abs(seed) > 1e-6 * scale else None
        for kind, total, seed in zip(kinds, totals, seed_sum, strict=True)
    }


def _token_coords(tokens: int, grid: tuple[int, int] | None) -> dict[str, Any]:
    """``token_kind``, ``patch_y``, ``patch_x`` of a token axis on a patch grid (extra tokens,
    e.g. the class token, come first and get patch coordinates -1)."""
    if grid is None:
        return {}
    gy, gx = grid
    extra = tokens - gy * gx
    patch = np.arange(tokens) - extra
    kinds = np.array(["class" if i == 0 else "extra" for i in range(extra)] + ["patch"] * (gy * gx))
    return {
        "token_kind": ("token", kinds),
        "patch_y": ("token", np.where(patch >= 0, patch // gx, -1)),
        "patch_x": ("token", np.where(patch >= 0, patch % gx, -1)),
    }


def _layer_dataset(
    capture: LayerCaptureLike,
    kinds: Sequence[str],
    seed_sum: np.ndarray,
    scale: float,
    axes: Any = None,
) -> xr.Dataset:
    """One layer node; with ``axes`` (the engine's ``LayerAxes``) the neuron axis is moved to
    ``channel`` (a view, no copy) and the other axes are named by what they are."""
    relevance = as_numpy(capture.relevance)
    activation = as_numpy(capture.activation)
    coords: dict[str, Any] = {"kind": list(kinds)}
    attrs: dict[str, Any] = {}
    if axes is None or activation.ndim <= 2:
        dims = _unit_dims(activation.ndim - 1)
    else:
        relevance = np.moveaxis(relevance, axes.feature + 1, 2)
        activation = np.moveaxis(activation, axes.feature, 1)
        dims = ("channel", *axes.positions)
        if "token" in dims:
            coords.update(_token_coords(activation.shape[dims.index("token") + 1], axes.grid))
        if axes.grid is not None:
            attrs["patch_grid"] = list(axes.grid)
    if axes is not None:
        flat = activation.ndim <= 2
        attrs.update(unit_kind=axes.kind, layout=["sample", "unit"] if flat else list(axes.layout))
    spatial_axes = tuple(range(3, relevance.ndim))
    neuron = relevance.sum(axis=spatial_axes) if spatial_axes else relevance
    data = {
        "relevance": (("kind", "sample", *dims), relevance),
        "activation": (("sample", *dims), activation),
        "neuron_relevance": (("kind", "sample", "channel"), neuron),
    }
    attrs["conservation"] = _ledger(neuron, seed_sum, scale, kinds)
    return xr.Dataset(data, coords=coords, attrs=encode_attrs(attrs))


def build_tree(
    output: EngineOutputLike,
    *,
    class_names: Sequence[str] | None = None,
    attrs: Mapping[str, Any] | None = None,
    output_activation: str = "softmax",
) -> xr.DataTree:
    """Label an engine output as the result tree of DESIGN §3.

    Parameters
    ----------
    output : EngineOutputLike
        The engine's ``EngineOutput`` (or anything with its fields).
    class_names : sequence of str, optional
        One name per class; default: the class indices as strings.
    attrs : mapping, optional
        Provenance for the root (method, rules, contrast, dual_seed, input_bounds, model, version,
        ...); values are encoded with :func:`clrp_widgets.results.encode_attr`.
    output_activation : {"softmax", "sigmoid"}
        How ``probs`` is read from the logits: softmax for single-label classifiers, sigmoid
        (one probability per class) for multi-label ones such as the shipped shapes model.

    Returns
    -------
    xarray.DataTree
        Root with logits/probs, ``/input`` and one ``/layers/<module name>`` node per capture,
        in forward order. Every node with relevance carries a ``conservation`` attribute:
        ``{kind: Σ relevance / Σ seed}``, ``None`` where the kind's seed sums to zero (the
        contrast of CLRP1, CLRP2, pairwise and SGLRP). Conservative rules give 1 on bias-free
        chains; a layer inside a residual branch carries only the branch's share (< 1).
    """
    kinds = tuple(output.kinds)
    logits = as_numpy(output.logits)
    targets = as_numpy(output.targets).astype(np.int64, copy=False)
    n_classes = logits.shape[1]
    names = [str(i) for i in range(n_classes)] if class_names is None else list(class_names)
    if len(names) != n_classes:
        raise ConfigError(
            f"{len(names)} class names for a model with {n_classes} outputs; pass exactly one "
            "name per class (or class_names=None)."
        )
    seed_sum = as_numpy(output.seed_sums).sum(axis=1, dtype=np.float64)
    logit_scale = np.abs(logits).max(axis=1).sum(dtype=np.float64)
    scale = max(float(np.abs(seed_sum).max(initial=0.0)), float(logit_scale))

    root_attrs = dict(attrs or {})
    root_attrs["layer_order"] = list(output.layers)
    root_attrs["seed_sum"] = dict(zip(kinds, seed_sum.tolist(), strict=True))
    root = xr.Dataset(
        {
            "logits": (("sample", "class"), logits),
            "probs": (("sample", "class"), probabilities(logits, output_activation)),
        },
        coords={
            "class": np.arange(n_classes),
            "class_name": ("class", np.array(names, dtype=str)),
            "target": ("sample", targets),
        },
        attrs=encode_attrs(root_attrs),
    )
    relevance = as_numpy(output.input)
    heatmap = relevance.sum(axis=2)
    inputs = xr.Dataset(
        {
            "relevance": (("kind", "sample", "color", "y", "x"), relevance),
            "heatmap": (("kind", "sample", "y", "x"), heatmap),
        },
        coords={"kind": list(kinds)},
        attrs=encode_attrs({"conservation": _ledger(heatmap, seed_sum, scale, kinds)}),
    )
    axes = getattr(output, "axes", None) or {}
    layers = {
        node_name(name): xr.DataTree(
            _layer_dataset(capture, kinds, seed_sum, scale, axes.get(name))
        )
        for name, capture in output.layers.items()
    }
    return xr.DataTree(
        root,
        children={"input": xr.DataTree(inputs), "layers": xr.DataTree(children=layers)},
    )
