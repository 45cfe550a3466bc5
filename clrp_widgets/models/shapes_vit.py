"""The shipped "shapes_vit": a small vision transformer for the generated scenes.

It is torchvision's ``VisionTransformer`` (Dosovitskiy et al., ICLR 2021), unchanged, configured
small for 64×64 scenes: an 8×8 grid of tokens (patch size 8) plus the class token, ``LAYERS``
encoder blocks of width ``HIDDEN`` with ``HEADS`` heads and an MLP of ``MLP`` units. The patch
embedding is torchvision's convolutional stem (``conv_stem_configs``: three 3×3 stride-2 convs
with batch norm and ReLU, then a 1×1 conv; Xiao et al., "Early convolutions help transformers see
better", NeurIPS 2021): with the plain 8×8 patch projection the model did not learn within the
training budget (loss at the label prior after 300 steps). Module names are torchvision's:
``conv_proj`` (the stem), ``encoder.layers.encoder_layer_<i>``, ``heads.head`` (the logits); the
engine's canonizer merges each batch norm into its conv. Input is the [0, 1] RGB image without
normalisation (``input_bounds = (0.0, 1.0)``); the output is one logit per shape class
(multi-label: sigmoid, a class is predicted present when its logit is > 0), as for the CNN.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torchvision.models import VisionTransformer
from torchvision.models.vision_transformer import ConvStemConfig

INPUT_SIZE = 64
PATCH = 8
LAYERS = 4
HEADS = 4
HIDDEN = 64
MLP = 128
#: the convolutional stem (channels, kernel, stride) that replaces the 8×8 patch projection
STEM = ((16, 3, 2), (32, 3, 2), (64, 3, 2))


def architecture() -> dict[str, Any]:
    """The shipped configuration, as stored in the weights' metadata (``meta["vit"]``)."""
    return {
        "image_size": INPUT_SIZE,
        "patch_size": PATCH,
        "num_layers": LAYERS,
        "num_heads": HEADS,
        "hidden_dim": HIDDEN,
        "mlp_dim": MLP,
        "conv_stem": [list(c) for c in STEM],
    }


def shapes_vit(num_classes: int = 8, **config: Any) -> VisionTransformer:
    """A torchvision ``VisionTransformer`` with the shipped configuration (overridable).

    Parameters
    ----------
    num_classes : int
        Number of output logits (8 shape classes for the shipped model).
    **config
        Keyword arguments of ``VisionTransformer`` that replace those of :func:`architecture`;
        ``conv_stem`` is a list of ``[channels, kernel, stride]`` (torchvision's
        ``ConvStemConfig`` with batch norm and ReLU) replacing the patch embedding.
    """
    config = {**architecture(), **config}
    stem = config.pop("conv_stem", None)
    if stem:
        config["conv_stem_configs"] = [
            ConvStemConfig(int(c), int(k), int(s), nn.BatchNorm2d, nn.ReLU) for c, k, s in stem
        ]
    return VisionTransformer(num_classes=num_classes, **config)
