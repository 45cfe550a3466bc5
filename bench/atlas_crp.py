"""zennit-crp's FeatureVisualization (RelMax) on the shapes model: run in bench/.crp-venv.

    bench/.crp-venv/bin/python bench/atlas_crp.py SAMPLES.pt OUT.json

``SAMPLES.pt`` (written by ``bench/atlas.py``) holds the shapes model's state dict and the sample
table (images, image row and target per sample). One process, batch 32, relevance summed over
space, not normalised (``abs_norm=False``, like the store's plain relevance). Composite: zennit's
ZBox(0, 1) on the first conv, a bias-free z+ on every other conv/linear layer (the "paper" rules),
ReLU passed through, max-pooling by its gradient. Writes the seconds of ``fv.run`` and, per
channel of ``features.11``, the top-8 samples.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import torch
from crp.attribution import CondAttribution
from crp.concepts import ChannelConcept
from crp.visualization import FeatureVisualization
from zennit.composites import SpecialFirstLayerMapComposite
from zennit.core import BasicHook, stabilize
from zennit.rules import Pass, ZBox
from zennit.types import Activation, Convolution, Linear

from clrp_widgets.models.shapes_net import ShapesNet  # torch only

LAYER, K = "features.11", 8


class BiasFreeZPlus(BasicHook):
    """z+ with the bias left out: R_i = a_i w_ij+ / sum_i a_i w_ij+ R_j (inputs are >= 0)."""

    def __init__(self) -> None:
        super().__init__(
            input_modifiers=[lambda input: input.clamp(min=0)],
            param_modifiers=[
                lambda param, name: (
                    torch.zeros_like(param) if name == "bias" else param.clamp(min=0)
                )
            ],
            output_modifiers=[lambda output: output],
            gradient_mapper=lambda out_grad, outputs: [out_grad / stabilize(outputs[0], 1e-9)],
            reducer=lambda inputs, gradients: inputs[0] * gradients[0],
        )


class Samples(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, image: torch.Tensor, target: torch.Tensor) -> None:
        self.images, self.image, self.target = images, image, target

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, i: int):
        return self.images[int(self.image[i])], int(self.target[i])


def main() -> None:
    torch.set_num_threads(1)
    saved = torch.load(sys.argv[1])
    model = ShapesNet(8)
    model.load_state_dict(saved["state_dict"])
    model.eval()
    data = Samples(saved["images"], saved["image"], saved["target"])
    composite = SpecialFirstLayerMapComposite(
        layer_map=[(Activation, Pass()), (Convolution, BiasFreeZPlus()), (Linear, BiasFreeZPlus())],
        first_map=[(Convolution, ZBox(0.0, 1.0))],
    )
    attribution = CondAttribution(model, device=torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        fv = FeatureVisualization(
            attribution, data, {LAYER: ChannelConcept()}, abs_norm=False, path=tmp
        )
        began = time.perf_counter()
        fv.run(composite, 0, len(data), batch_size=32, checkpoint=10**9)
        seconds = time.perf_counter() - began
        import numpy as np

        top = np.load(f"{tmp}/RelMax_sum_unnormed/{LAYER}_data.npy")[:K]  # (K, channels)
    out = {
        "seconds": seconds,
        "samples": len(data),
        "top": [[int(s) for s in top[:, c]] for c in range(top.shape[1])],
        "composite": "ZBox(0,1) first conv, bias-free z+ (eps 1e-9) elsewhere, ReLU pass",
    }
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
