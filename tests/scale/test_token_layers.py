"""The data-set jobs store a transformer's token layers per hidden unit and head, as the
result tree does (its ``neuron_relevance``), not per token."""

from __future__ import annotations

import numpy as np
import torch
from tiny_vit import tiny_vit

import clrp_widgets as cw
from clrp_widgets.engine import RelevanceEngine
from clrp_widgets.scale.store import KINDS
from clrp_widgets.scale.worker import explain

MLP0 = "encoder.layers.encoder_layer_0.mlp.0"
HEADS = "encoder.layers.encoder_layer_1.self_attention:softmax"


def test_token_layers_are_stored_per_hidden_unit_and_head() -> None:
    model = tiny_vit().eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([1, 3])
    engine = RelevanceEngine(model, rules="attnlrp", input_bounds=(0, 1))
    arrays = explain(engine, x, target, ("clrp1",), [MLP0, HEADS], "uniform")
    tree = cw.Explainer(model, rules="attnlrp", input_bounds=(0, 1)).explain(
        x, [1, 3], contrast="clrp1", layers=[MLP0, HEADS]
    )
    for name, units in ((MLP0, 64), (HEADS, 4)):
        stored = arrays[f"layer:{name}"]  # (contrast, kind, sample, channel)
        assert stored.shape == (1, len(KINDS), 2, units)
        want = tree["layers"][name].ds.neuron_relevance.sel(kind=list(KINDS)).values
        np.testing.assert_allclose(stored[0], want, rtol=1e-4, atol=1e-7)
        assert arrays[f"max:{name}"].shape == arrays[f"mean:{name}"].shape == (2, units)
    act = tree["layers"][MLP0].ds.activation.values  # (sample, channel, token)
    np.testing.assert_allclose(arrays[f"max:{MLP0}"], act.max(axis=2), rtol=1e-6)
