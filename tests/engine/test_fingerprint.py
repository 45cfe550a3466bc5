"""The weights fingerprint: which edits it sees, and its documented limit on large tensors."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from clrp_widgets.engine.fingerprint import FULL_SUM_MAX, SAMPLE_STRIDE, weights_fingerprint


def _model() -> nn.Module:
    torch.manual_seed(0)
    big = nn.Linear(2100, 2048)  # 4.3M entries: sampled
    assert big.weight.numel() > FULL_SUM_MAX
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), big)


def _row(w: torch.Tensor) -> None:
    w.data[17].zero_()


def _column(w: torch.Tensor) -> None:
    w.data[:, 1001].zero_()


def _scale(w: torch.Tensor) -> None:
    w.data.mul_(0.5)


def _sampled_entry(w: torch.Tensor) -> None:
    w.data.view(-1)[40 * SAMPLE_STRIDE] += 1.0


@pytest.mark.parametrize("edit", [_row, _column, _scale, _sampled_entry])
def test_data_edits_of_a_large_tensor_are_seen(edit: Callable[[torch.Tensor], None]) -> None:
    model = _model()
    before = weights_fingerprint(model)
    edit(model[2].weight)
    assert weights_fingerprint(model) != before


def test_any_entry_of_a_small_tensor_is_seen_through_data() -> None:
    model = _model()
    before = weights_fingerprint(model)
    model[0].weight.data[3, 1, 2, 0] += 1e-3
    assert weights_fingerprint(model) != before


def test_limit_one_unsampled_entry_of_a_large_tensor_through_data() -> None:
    """Documented limit: such an edit is not seen; the same edit made on the parameter is."""
    model = _model()
    before = weights_fingerprint(model)
    model[2].weight.data.view(-1)[1] += 1.0
    assert weights_fingerprint(model) == before
    with torch.no_grad():
        model[2].weight.view(-1)[1] += 1.0  # on the parameter: its version counter moves
    assert weights_fingerprint(model) != before


@pytest.mark.parametrize("numel", [7, 8], ids=["odd_length", "even_length"])
@pytest.mark.parametrize("offset", [0, 1], ids=["aligned", "odd_offset"])
def test_any_entry_is_seen_in_tensors_of_any_length_and_offset(numel: int, offset: int) -> None:
    """Small tensors are summed in 8-byte words where their length and offset allow, in 4-byte
    ones otherwise (a parameter viewing a flat buffer at an odd offset): every entry counts."""
    module = nn.Module()
    module.w = nn.Parameter(torch.randn(numel + offset)[offset:])
    for i in range(numel):
        before = weights_fingerprint(module)
        module.w.data[i] += 1.0
        assert weights_fingerprint(module) != before, i
