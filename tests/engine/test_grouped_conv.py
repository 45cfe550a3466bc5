"""LinearOp's float64 grouped convolutions (unfold + batched matmul) against torch's own kernels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from clrp_widgets.engine.ops import LinearOp

CASES = [
    # in, out, kernel, stride, padding, dilation, groups, size
    (8, 8, 3, 1, 1, 1, 8, 5),  # depthwise
    (6, 12, 5, 2, 2, 1, 6, 9),  # depthwise with channel multiplier 2, stride 2
    (8, 16, 3, 2, 2, 2, 4, 10),  # grouped, dilated
    (4, 4, 7, 1, 3, 1, 4, 1),  # depthwise 7x7 on a 1x1 map (ConvNeXt's last stage)
    (6, 6, 3, 2, 0, 1, 3, 8),  # no padding, the last row and column never read
]


@pytest.mark.parametrize("case", CASES)
def test_unfolded_grouped_conv_equals_torch(case: tuple[int, ...]) -> None:
    c_in, c_out, k, stride, pad, dil, groups, size = case
    torch.manual_seed(0)
    conv = nn.Conv2d(c_in, c_out, k, stride, pad, dil, groups).double()
    op = LinearOp(conv, "conv")
    x = torch.randn(2, c_in, size, size, dtype=torch.float64, requires_grad=True)
    assert op._by_unfold(x)
    want = conv(x)
    torch.testing.assert_close(op.forward(x, conv.weight, conv.bias), want, rtol=1e-12, atol=1e-12)
    s = torch.randn_like(want)
    (grad,) = torch.autograd.grad(want, x, s)
    torch.testing.assert_close(op.transpose(s, conv.weight, x.shape), grad, rtol=1e-12, atol=1e-12)


def test_float32_and_ungrouped_convs_keep_torch_kernels() -> None:
    depthwise = LinearOp(nn.Conv2d(4, 4, 3, groups=4), "dw")
    assert not depthwise._by_unfold(torch.zeros(1, 4, 5, 5))
    dense = LinearOp(nn.Conv2d(4, 4, 3), "conv")
    assert not dense._by_unfold(torch.zeros(1, 4, 5, 5, dtype=torch.float64))
