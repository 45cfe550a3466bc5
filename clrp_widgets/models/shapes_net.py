"""The shipped "shapes" CNN: a small VGG-style network for the generated scenes.

Layout as in torchvision's VGG, so module names read ``features.0`` … ``classifier.2``:
four conv stages (3×3 convs with ReLU, then 2×2 max-pooling) and a classifier of two linear
layers. Input is the [0, 1] RGB image at 64×64 without normalisation
(``input_bounds = (0.0, 1.0)``); the output is one logit per shape class (multi-label: sigmoid,
a class is predicted present when its logit is > 0). It is trained with batch norm after each conv
(``batch_norm=True``), which ``fold_batch_norm`` then merges into the conv weights and biases, so
the shipped network is plain conv–ReLU–max-pool.
"""

from __future__ import annotations

import torch
from torch import nn

#: conv stages as (channels, number of 3×3 convs); each stage ends with a 2×2 max-pooling
STAGES: tuple[tuple[int, int], ...] = ((16, 1), (32, 1), (64, 2), (64, 1))
HIDDEN = 128
INPUT_SIZE = 64


class ShapesNet(nn.Module):
    """VGG-style multi-label classifier with ``features`` and ``classifier`` ``nn.Sequential``s.

    Parameters
    ----------
    num_classes : int
        Number of output logits (8 shape classes for the shipped model).
    batch_norm : bool
        Insert ``BatchNorm2d`` after each conv (for training; see ``fold_batch_norm``).
    """

    def __init__(self, num_classes: int = 8, batch_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width, repeats in STAGES:
            for _ in range(repeats):
                layers.append(nn.Conv2d(channels, width, 3, padding=1, bias=not batch_norm))
                layers += [nn.BatchNorm2d(width), nn.ReLU()] if batch_norm else [nn.ReLU()]
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = INPUT_SIZE // 2 ** len(STAGES)
        self.classifier = nn.Sequential(
            nn.Linear(channels * side * side, HIDDEN),
            nn.ReLU(),
            nn.Linear(HIDDEN, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` for images ``(N, 3, 64, 64)`` in [0, 1]."""
        return self.classifier(torch.flatten(self.features(x), 1))


@torch.no_grad()
def fold_batch_norm(trained: ShapesNet) -> ShapesNet:
    """A plain ``ShapesNet`` computing the same function as a batch-norm one in eval mode."""
    last = trained.classifier[-1]
    assert isinstance(last, nn.Linear)
    plain = ShapesNet(last.out_features, batch_norm=False).eval()
    convs = [m for m in trained.features if isinstance(m, nn.Conv2d)]
    norms = [m for m in trained.features if isinstance(m, nn.BatchNorm2d)]
    targets = [m for m in plain.features if isinstance(m, nn.Conv2d)]
    for conv, norm, target in zip(convs, norms, targets, strict=True):
        assert norm.running_var is not None and norm.running_mean is not None
        assert target.bias is not None
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        target.weight.copy_(conv.weight * scale[:, None, None, None])
        target.bias.copy_(norm.bias - norm.running_mean * scale)
    plain.classifier.load_state_dict(trained.classifier.state_dict())
    return plain
