"""Which axis of a captured layer holds its neurons (channels, hidden units or heads).

A CNN layer is ``(N, C, H, W)``: the neurons are axis 1. A transformer's token layers are
``(N, tokens, hidden)`` and Swin's are channels-last ``(N, H, W, C)``: the neurons are the last
axis. The rule follows what the op that made the layer acts on:

- **axis 1 (``"channel"``)**: Conv modules and ``conv1d/2d/3d`` calls, pooling (max, average,
  adaptive), ``batch_norm``: they act on the channels-first layout.
- **last axis (``"unit"``)**: ``nn.Linear`` and ``F.linear`` (and ``layer_norm``): they mix or
  normalise the last axis, so its entries are the hidden units. A flat ``(N, units)`` output is
  both.
- **axis 1 (``"head"``)**: attention steps with a heads axis, the 4-d outputs of ``softmax``,
  ``matmul``, ``bmm`` and ``einsum`` (the engine runs fused attention batch first with the heads
  as axis 1: ``(N, heads, query, key)`` scores and attention maps, ``(N, heads, token,
  head_dim)`` for AV). A 3-d product is a token layer (``x @ W``); 5-d and more keeps axis 1
  (e.g. MaxViT's grid attention ``(N, G, P, heads, I, J)``) with generic axis names
  (``axis<i>``, its index in the tensor).
- **inherited**: element-wise layers (residual ``add``, gates ``mul``, ``div``, ``mean``/``sum``
  reductions) act on no axis; they take the axis of the nearest captured layer of the same
  shape, earlier in the forward pass first, then later; without one, axis 1.

The result tree moves the neuron axis to the front, so every layer reads
``(channel, <positions>)``: token layers ``(channel, token)``, channels-last ones
``(channel, y, x)``, except where their two position axes hold the pixels of the last
channels-first map in another arrangement (MaxViT's window and grid partitions: same count,
other shape), which get generic names ``axis<i>`` (a partition of the same shape as the map,
as in tiny configurations, cannot be told from it by shape and reads ``y, x``). Tokens are
mapped to the patch grid when a channels-first layer earlier in the forward pass (the patch
embedding) has ``gy * gx`` positions and the layer has ``gy * gx`` tokens plus at most
:data:`MAX_EXTRA_TOKENS` extra ones, which are taken to come first (the class token, as in
torchvision's ViT).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from .ops import LINEAR_TYPES
from .presets import AVG_POOLS, MAX_POOLS

MAX_EXTRA_TOKENS = 4
_SPATIAL = {0: (), 1: ("x",), 2: ("y", "x"), 3: ("z", "y", "x")}
_CHANNEL_OPS = ("conv", "pool", "batch_norm")
_UNIT_OPS = ("linear", "layer_norm")
_PRODUCT_OPS = ("matmul", "bmm", "einsum", "baddbmm", "softmax")


@dataclass(frozen=True)
class LayerAxes:
    """Where one layer's neurons are and what its other axes are.

    Attributes
    ----------
    feature : int
        The neuron axis of the layer's output ``(N, ...)`` (1 or ``ndim - 1``).
    kind : str
        ``"channel"`` (conv/pooling), ``"unit"`` (hidden units) or ``"head"`` (attention heads).
    positions : tuple of str
        Names of the other axes after ``sample``, in the tensor's order.
    grid : (int, int) or None
        For a layer with a ``token`` (or attention ``key``) axis: the patch grid ``(gy, gx)``
        that axis's last ``gy * gx`` tokens lie on.
    """

    feature: int
    kind: str
    positions: tuple[str, ...]
    grid: tuple[int, int] | None = None

    @property
    def layout(self) -> tuple[str, ...]:
        """The tensor's axis names in its own order, ``"sample"`` first."""
        names = list(self.positions)
        names.insert(self.feature - 1, "channel")
        return ("sample", *names)


def _op(name: str) -> str:
    """The op of an op-level layer name ``<module>:<op>[.k]`` ("" for a module layer)."""
    _, colon, op = name.rpartition(":")
    return op.split(".")[0] if colon else ""


def _own(name: str, module: Any, ndim: int) -> tuple[int, str] | None:
    """(axis, kind) that the layer's own op decides, or None for element-wise layers."""
    last = ndim - 1
    op = _op(name)
    if isinstance(module, nn.Linear) or op in _UNIT_OPS:
        return last, "unit"
    if isinstance(module, (*LINEAR_TYPES, *MAX_POOLS, *AVG_POOLS)):
        return 1, "channel"
    if any(key in op for key in _CHANNEL_OPS):
        return 1, "channel"
    if op in _PRODUCT_OPS:
        if ndim == 4:
            return 1, "head"
        return (last, "unit") if ndim == 3 else (1, "channel")
    return None


def _generic(ndim: int, feature: int) -> tuple[str, ...]:
    return tuple(f"axis{i}" for i in range(1, ndim) if i != feature)


def _positions(
    kind: str, feature: int, shape: Sequence[int], name: str, grids: Sequence[tuple[int, ...]]
) -> tuple[str, ...]:
    ndim = len(shape)
    rest = ndim - 2
    if kind == "head" and ndim == 4:
        scores = _op(name) == "softmax" or shape[-1] == shape[-2]
        return ("query", "key") if scores else ("token", "head_dim")
    if _op(name) in _PRODUCT_OPS and ndim > 4:
        return _generic(ndim, feature)  # e.g. MaxViT's (N, G, P, heads, I, J)
    if feature == ndim - 1 and feature != 1:
        if rest == 1:
            return ("token",)
        if rest == 2 and grids and _rearranged(tuple(shape[1:3]), grids[-1][-2:]):
            return _generic(ndim, feature)  # windows x positions, e.g. MaxViT's partitions
        return _SPATIAL.get(rest) or _generic(ndim, feature)
    return _SPATIAL.get(rest) or _generic(ndim, feature)


def _rearranged(positions: tuple[int, ...], image: tuple[int, ...]) -> bool:
    """Whether channels-last positions hold the pixels of the last channels-first map in
    another arrangement (same count, other shape): then they are not ``(y, x)``."""
    return positions != image and positions[0] * positions[1] == image[0] * image[1]


def _grid(tokens: int, earlier: Sequence[tuple[int, ...]]) -> tuple[int, int] | None:
    for shape in reversed(earlier):
        gy, gx = shape[-2:]
        if 0 <= tokens - gy * gx <= MAX_EXTRA_TOKENS:
            return gy, gx
    return None


def layer_axes(
    names: Sequence[str], shapes: Mapping[str, Sequence[int]], modules: Mapping[str, Any]
) -> dict[str, LayerAxes]:
    """The :class:`LayerAxes` of every layer in ``names`` (forward order), see the module docs.

    Parameters
    ----------
    names : sequence of str
        Captured layers in forward order.
    shapes : mapping
        Each layer's output shape ``(N, ...)``.
    modules : mapping
        Module name to module (``model.named_modules()``); op-level layers are absent.
    """
    own: dict[str, tuple[int, str] | None] = {
        n: _own(n, modules.get(n), len(shapes[n])) for n in names
    }
    result: dict[str, LayerAxes] = {}
    grids: list[tuple[int, ...]] = []  # channels-first 4-d shapes seen so far (patch grids)
    for i, name in enumerate(names):
        shape = tuple(shapes[name])
        decided = own[name]
        if decided is None:
            same = [n for n in (*reversed(names[:i]), *names[i + 1 :]) if own[n] is not None]
            match = next((n for n in same if tuple(shapes[n]) == shape), None)
            decided = own[match] if match is not None else (1, "channel")
            assert decided is not None
        feature, kind = decided
        if len(shape) <= 2:
            feature, kind = 1, "unit" if len(shape) == 2 else kind
        positions = _positions(kind, feature, shape, name, grids)
        tokens = next((p for p in ("token", "key") if p in positions), None)
        size = shape[1:][positions.index(tokens) + (feature == 1)] if tokens else 0
        grid = _grid(size, grids) if tokens else None
        if feature == 1 and kind == "channel" and len(shape) == 4:
            grids.append(shape)
        result[name] = LayerAxes(feature, kind, positions, grid)
    return result


def neurons_first(tensor: Any, axes: LayerAxes | None, lead: int = 1) -> Any:
    """``tensor`` (a layer's ``(N, ...)`` output, or ``(K, N, ...)`` relevance with ``lead=2``)
    with the neuron axis moved to position ``lead`` (a view); unchanged without ``axes``."""
    if axes is None:
        return tensor
    return tensor.movedim(axes.feature + lead - 1, lead)
