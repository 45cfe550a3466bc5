"""Fixtures of the engine tests (helpers live in engine_nets.py)."""

from __future__ import annotations

import pytest
import torch
from engine_nets import make_cnn, make_input
from torch import nn


@pytest.fixture
def cnn() -> nn.Module:
    return make_cnn()


@pytest.fixture
def x() -> torch.Tensor:
    return make_input()
