"""Small models and model-safety checks shared by the engine tests."""

from __future__ import annotations

import torch
from torch import nn


def make_cnn(
    bias: bool = False, inplace: bool = True, seed: int = 0, classes: int = 6
) -> nn.Module:
    """A VGG-like CNN on (N, 3, 16, 16): conv-relu-pool twice, adaptive pool, two linear layers."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=bias),
        nn.ReLU(inplace=inplace),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 12, 3, padding=1, bias=bias),
        nn.ReLU(inplace=inplace),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d((4, 4)),
        nn.Flatten(),
        nn.Linear(12 * 16, 20, bias=bias),
        nn.ReLU(inplace=inplace),
        nn.Dropout(0.5),
        nn.Linear(20, classes, bias=bias),
    )
    return model.eval()


def make_input(n: int = 2, seed: int = 1, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.rand(n, 3, 16, 16) * (high - low) + low


def snapshot(model: nn.Module) -> dict:
    """Everything that must be bit-identical after a call."""
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "grad": [p.requires_grad for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "dicts": [sorted(m.__dict__) for m in model.modules()],
        "hooks": [
            (
                len(m._forward_hooks),
                len(m._forward_pre_hooks),
                len(m._backward_hooks),
                len(getattr(m, "_backward_pre_hooks", {})),
            )
            for m in model.modules()
        ],
        "ptrs": [p.data_ptr() for p in model.parameters()],
    }


def assert_untouched(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert before["state"].keys() == after["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(v, after["state"][k]), k
    for key in ("grad", "training", "dicts", "hooks", "ptrs"):
        assert before[key] == after[key], key
    assert all(h == (0, 0, 0, 0) for h in after["hooks"])
