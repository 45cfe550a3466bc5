"""The model is bit-identical after every call, also after errors mid-forward or mid-backward."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest
import torch
import torchvision
from engine_nets import assert_untouched, make_cnn, make_input, snapshot
from torch import nn

from clrp_widgets.engine import RelevanceEngine, ZBox, ZPlus

B = (0.0, 1.0)


@dataclass(frozen=True)
class Exploding(ZPlus):
    """A rule that fails in the backward pass."""

    def relevance(self, op, a, st, p, R):
        raise RuntimeError("boom in backward")


def test_every_entry_point_leaves_model_untouched(cnn, x):
    before = snapshot(cnn)
    engine = RelevanceEngine(cnn, input_bounds=B)
    engine.run(x, 1, "clrp2", kinds=("target", "dual", "contrast"), capture="all")
    engine.neuron(x, "3", 2, capture="all")
    engine.conditional(x, 1, "3", [0, 1])
    assert_untouched(cnn, before)


def test_restored_after_exception_mid_backward(cnn, x):
    before = snapshot(cnn)
    rules = {"0": ZBox(0.0, 1.0), nn.Conv2d: Exploding(), nn.Linear: ZPlus()}
    engine = RelevanceEngine(cnn, rules=rules)
    with pytest.raises(RuntimeError, match="boom in backward"):
        engine.run(x, 0, "clrp1")
    assert_untouched(cnn, before)
    # the model still explains normally afterwards
    assert RelevanceEngine(cnn, input_bounds=B).run(x, 0).input.isfinite().all()


def test_restored_after_exception_mid_forward_in_resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4).eval()
    before = snapshot(model)

    def fail(*_):
        raise RuntimeError("boom in forward")

    handle = model.layer1[1].conv2.register_forward_hook(fail)
    engine = RelevanceEngine(model, input_bounds=(-1.0, 1.0))
    with pytest.raises(RuntimeError, match="boom in forward"):
        engine.run(torch.rand(1, 3, 32, 32), 0)
    handle.remove()
    assert_untouched(model, before)
    assert "forward" not in model.layer1[0].__dict__


def test_training_mode_explained_in_eval_semantics_and_restored():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(4 * 16 * 16, 3),
    )
    x = make_input(2)
    model.eval()
    expected = RelevanceEngine(model, input_bounds=B).run(x, 1, capture="all")
    model.train()
    model[4].eval()  # mixed flags must come back exactly
    before = snapshot(model)
    with pytest.warns(UserWarning, match="training mode"):
        got = RelevanceEngine(model, input_bounds=B).run(x, 1, capture="all")
    assert_untouched(model, before)  # flags restored, BatchNorm statistics not updated
    torch.testing.assert_close(got.input, expected.input)
    torch.testing.assert_close(got.logits, expected.logits)


def test_eval_model_gives_no_warning(cnn, x):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RelevanceEngine(cnn, input_bounds=B).run(x, 0)


def test_frozen_parameters_stay_frozen(x):
    model = make_cnn()
    for p in model.parameters():
        p.requires_grad_(False)
    before = snapshot(model)
    out = RelevanceEngine(model, input_bounds=B).run(x, 2, "clrp1")
    assert out.input.abs().sum() > 0
    assert_untouched(model, before)
