"""Linear operators of Conv1d/2d/3d and Linear layers with swappable weights.

A rule needs the layer's map ``f(x, W, b)`` evaluated with modified weights, and its transpose
``f^T(s, W)`` (the gradient of ``f`` with respect to ``x``). :class:`LinearOp` gives both for one
module, without touching the module.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .errors import UnsupportedLayerError

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
LINEAR_TYPES = (nn.Linear, *CONV_TYPES)


_STOCK = {cls: (cls.forward, getattr(cls, "_conv_forward", None)) for cls in LINEAR_TYPES}


def runs_at_op_level(module: nn.Module) -> bool:
    """Whether a Conv/Linear module is explained through the functional call it makes.

    True when its class overrides ``forward`` (or ``_conv_forward``) of the torch class it
    derives from, e.g. timm's ``StdConv2d`` (standardises its weight first) or ``Conv2dSame``
    (pads first), or when it pads other than with zeros (``padding_mode="reflect"``: a pad,
    then a convolution without padding). The rule then reads the weight and padding that
    ``F.conv2d``/``F.linear`` actually get.
    """
    base = next(cls for cls in LINEAR_TYPES if isinstance(module, cls))
    forward, conv_forward = _STOCK[base]
    cls = type(module)
    if cls.forward is not forward or getattr(cls, "_conv_forward", None) is not conv_forward:
        return True
    return getattr(module, "padding_mode", "zeros") != "zeros"


class LinearOp:
    """The affine map of one ``nn.Linear`` or ``nn.ConvNd`` module, with weights passed per call.

    Parameters
    ----------
    module
        The layer, with its stock ``forward`` (else :func:`runs_at_op_level`): numeric (or
        symmetric ``"same"``/``"valid"``) zero padding.
    name
        The module's path in the model, for error messages.
    """

    def __init__(self, module: nn.Module, name: str) -> None:
        self.is_conv = isinstance(module, CONV_TYPES)
        if not self.is_conv:
            return
        assert isinstance(module, CONV_TYPES)
        self.dims = len(module.kernel_size)
        self.stride = module.stride
        self.dilation = module.dilation
        self.groups = module.groups
        self.padding = _numeric_padding(module, name)
        self.conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[self.dims]

    @classmethod
    def from_call(
        cls, kind: str, weight: torch.Tensor, bound: dict[str, Any], name: str
    ) -> LinearOp:
        """The operator of a functional ``conv1d/2d/3d`` or ``linear`` call (bound arguments)."""
        op = cls.__new__(cls)
        op.is_conv = kind != "linear"
        if not op.is_conv:
            return op
        op.dims = weight.ndim - 2
        op.stride = _tuple(bound.get("stride", 1), op.dims)
        op.dilation = _tuple(bound.get("dilation", 1), op.dims)
        op.groups = int(bound.get("groups", 1))
        padding = bound.get("padding", 0)
        shim = type("Conv", (), {})()
        shim.padding = padding if isinstance(padding, str) else _tuple(padding, op.dims)
        shim.kernel_size = tuple(weight.shape[2:])
        shim.dilation = op.dilation
        op.padding = _numeric_padding(shim, name)
        op.conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[op.dims]
        return op

    def forward(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Evaluate ``f(x, weight) + bias``."""
        if not self.is_conv:
            return F.linear(x, weight, bias)
        if self._by_unfold(x):
            out = self._unfolded_forward(x, weight)
            return out if bias is None else out + bias.reshape(1, -1, 1, 1)
        return self.conv(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def transpose(
        self, s: torch.Tensor, weight: torch.Tensor, like: torch.Tensor | torch.Size
    ) -> torch.Tensor:
        """Evaluate ``f^T(s, weight)``: the input gradient of ``f`` for output gradient ``s``.

        ``like`` is the layer's input, or the shape of the result. The convolution backward takes
        an input tensor for its layout only (never its values) and makes it contiguous: the input
        itself costs nothing, while a stand-in for a bare shape is copied out in full (VGG16: 12
        ms per backward pass, when every layer passed a shape).
        """
        in_shape = like.shape if isinstance(like, torch.Tensor) else like
        if not self.is_conv:
            return s @ weight
        if self._by_unfold(s):
            return self._unfolded_transpose(s, weight, in_shape)
        shape = (*s.shape[:1], weight.shape[1] * self.groups, *in_shape[2:])
        usable = isinstance(like, torch.Tensor) and like.shape == shape and like.dtype == s.dtype
        layout = like if usable else s.new_empty(()).expand(shape)
        return torch.ops.aten.convolution_backward(
            s,
            layout,
            weight,
            None,
            self.stride,
            self.padding,
            self.dilation,
            False,
            [0] * self.dims,
            self.groups,
            [True, False, False],
        )[0]

    # torch's CPU kernels run a float64 grouped convolution one group at a time (about 10 us per
    # group: 17 ms for a 1536-channel depthwise layer on a 1x1 map, forward or transposed); as
    # unfold + one batched matmul it takes well under 1 ms, equal up to rounding. float32 (oneDNN)
    # and CUDA kernels handle groups natively and keep the convolution.
    def _by_unfold(self, t: torch.Tensor) -> bool:
        return (
            self.groups > 1
            and self.dims == 2
            and t.dtype == torch.float64
            and t.device.type == "cpu"
        )

    def _unfold_args(self, weight: torch.Tensor) -> dict[str, Any]:
        return {
            "kernel_size": tuple(weight.shape[2:]),
            "dilation": self.dilation,
            "padding": self.padding,
            "stride": self.stride,
        }

    def _unfolded_forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        n, g = x.shape[0], self.groups
        kh, kw = weight.shape[2:]
        cols = F.unfold(x, **self._unfold_args(weight))  # (N, C_in * kh * kw, L)
        cols = cols.reshape(n, g, -1, cols.shape[-1])
        out = torch.matmul(weight.reshape(g, weight.shape[0] // g, -1), cols)
        sizes = [
            (size + 2 * p - d * (k - 1) - 1) // st + 1
            for size, p, d, k, st in zip(
                x.shape[2:], self.padding, self.dilation, (kh, kw), self.stride, strict=True
            )
        ]
        return out.reshape(n, weight.shape[0], *sizes)

    def _unfolded_transpose(
        self, s: torch.Tensor, weight: torch.Tensor, in_shape: torch.Size
    ) -> torch.Tensor:
        n, g = s.shape[0], self.groups
        w = weight.reshape(g, weight.shape[0] // g, -1).transpose(1, 2)
        cols = torch.matmul(w, s.reshape(n, g, w.shape[2], -1))  # (N, G, C_in/G * kh * kw, L)
        return F.fold(
            cols.reshape(n, -1, cols.shape[-1]), tuple(in_shape[2:]), **self._unfold_args(weight)
        )


def _numeric_padding(module: Any, name: str) -> tuple[int, ...]:
    padding = module.padding
    if padding == "valid":
        return (0,) * len(module.kernel_size)
    if padding == "same":
        total = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size, strict=True)]
        if any(t % 2 for t in total):
            raise UnsupportedLayerError(
                f"module {name!r} uses padding='same' with an even kernel (asymmetric padding), "
                "which has no transposed form here. Use explicit symmetric padding."
            )
        return tuple(t // 2 for t in total)
    return tuple(padding)


def _tuple(value: Any, dims: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dims
    values = tuple(int(v) for v in value)
    return values * dims if len(values) == 1 else values
