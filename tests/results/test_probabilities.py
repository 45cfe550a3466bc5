"""Displayed probabilities follow the model's output activation (softmax or multi-label sigmoid)."""

import numpy as np
import pytest
import torch

import clrp_widgets as cw
from clrp_widgets.engine.errors import ConfigError, InputError
from clrp_widgets.results.tree import probabilities


def test_softmax_and_sigmoid_against_torch():
    logits = np.array([[2.0, -1.0, 0.5], [-30.0, 30.0, 0.0]], dtype=np.float32)
    soft = probabilities(logits, "softmax")
    sig = probabilities(logits, "sigmoid")
    np.testing.assert_allclose(soft, torch.softmax(torch.from_numpy(logits), 1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(sig, torch.sigmoid(torch.from_numpy(logits)).numpy(), rtol=1e-6)
    assert soft.dtype == sig.dtype == np.float32


def test_unknown_activation_names_the_choices():
    with pytest.raises(ConfigError, match="softmax"):
        probabilities(np.zeros((1, 2)), "tanh")
    with pytest.raises(InputError, match="sigmoid"):
        cw.ModelBundle(torch.nn.Linear(2, 2), ["a", "b"], (0.0, 1.0), output_activation="relu")


def test_shapes_model_reads_both_present_objects_as_likely():
    bundle = cw.load_model("shapes")
    assert bundle.output_activation == "sigmoid"
    scene = cw.scenes(1, seed=3, min_objects=2, max_objects=2)
    ex = cw.Explainer(bundle)
    probs = ex.predict(scene.tensor()).values[0]
    present = np.flatnonzero(scene.labels.values[0])
    assert probs[present].min() > 0.5  # both objects, not one softmax winner
    tree = ex.explain(scene.tensor(), int(present[0]), layers=[])
    np.testing.assert_allclose(tree.probs.values[0], probs, rtol=1e-5)
