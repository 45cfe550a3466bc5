"""A hand-made engine output with the fields of ``clrp_widgets.engine.EngineOutput``."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

LAYER_ORDER = ["features.0", "features.10", "features.2", "classifier.1"]


@dataclass
class Capture:
    activation: torch.Tensor
    relevance: torch.Tensor


@dataclass
class Output:
    logits: torch.Tensor
    targets: torch.Tensor
    kinds: tuple[str, ...]
    input: torch.Tensor
    layers: dict[str, Capture] = field(default_factory=dict)
    seed_sums: torch.Tensor = field(default_factory=lambda: torch.zeros(0))


def make_output(kinds=("target", "dual", "contrast"), n=2) -> Output:
    """Relevance scaled so every layer conserves its kind's seed sum exactly (contrast: 0)."""
    g = torch.Generator().manual_seed(0)
    k = len(kinds)
    logits = torch.randn(n, 4, generator=g) + 3
    targets = torch.tensor([1, 3][:n])
    target_seed = logits[torch.arange(n), targets]
    seeds = {"target": target_seed, "dual": target_seed, "contrast": torch.zeros(n)}
    seed_sums = torch.stack([seeds[kind] for kind in kinds])

    def conserving(shape):
        r = torch.rand(k, n, *shape, generator=g)
        r = r / r.flatten(2).sum(2).reshape(k, n, *[1] * len(shape))
        r = r * seed_sums.reshape(k, n, *[1] * len(shape))
        if "contrast" in kinds:  # zero-sum but not zero: + and - halves
            i = kinds.index("contrast")
            r[i] = torch.rand(n, *shape, generator=g) - 0.5
            r[i] -= r[i].flatten(1).mean(1).reshape(n, *[1] * len(shape))
        return r

    layers = {
        "features.0": Capture(torch.randn(n, 5, 6, 6, generator=g), conserving((5, 6, 6))),
        "features.10": Capture(torch.randn(n, 7, 3, 3, generator=g), conserving((7, 3, 3))),
        "features.2": Capture(torch.randn(n, 7, 3, 3, generator=g), conserving((7, 3, 3))),
        "classifier.1": Capture(torch.randn(n, 9, generator=g), conserving((9,))),
    }
    return Output(logits, targets, tuple(kinds), conserving((3, 6, 6)), layers, seed_sums)


@pytest.fixture
def output() -> Output:
    return make_output()
