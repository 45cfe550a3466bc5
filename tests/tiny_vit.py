"""The small random vision transformer the ViT tests share (importable from every test folder:
pytest puts this folder, that of the root ``conftest.py``, on ``sys.path``)."""

from __future__ import annotations

import torch
import torchvision
from torch import nn


def tiny_vit(
    image_size: int = 32, patch_size: int = 8, num_heads: int = 4, hidden_dim: int = 32
) -> torchvision.models.VisionTransformer:
    """torchvision's ViT with two blocks and five classes, seeded; its head's weights are drawn
    wide enough (std 0.3) that the logits differ."""
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=image_size, patch_size=patch_size, num_layers=2, num_heads=num_heads,
        hidden_dim=hidden_dim, mlp_dim=2 * hidden_dim, num_classes=5,
    )  # fmt: skip
    nn.init.normal_(model.heads.head.weight, std=0.3)
    return model
