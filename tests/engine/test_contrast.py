"""One-pass contrasts equal their explicit two-pass definitions; conservation at every layer.

The two-pass references use only ``cw.lrp`` (one class at a time) and LRP's linearity in the seed
``z_k``: the map of class k seeded with ``s`` is ``s / z_k * lrp(k)``.
"""

from __future__ import annotations

import copy

import pytest
import torch
from engine_nets import make_cnn, make_input
from torch import nn

import clrp_widgets as cw
from clrp_widgets.engine import RelevanceEngine

B = (0.0, 1.0)
DT = torch.float64


@pytest.fixture(scope="module")
def setup():
    model = make_cnn(bias=False, seed=11).to(DT)
    x = make_input(2, seed=12).to(DT)
    with torch.no_grad():
        logits = model(x)
    maps = torch.stack([cw.lrp(model, x, k, input_bounds=B) for k in range(logits.shape[1])])
    return model, x, logits, maps  # maps: (C, N, 3, H, W), class k seeded with z_k


def combine(maps, logits, weights):
    """sum_k weights[n, k] / z[n, k] * lrp_k[n]."""
    w = weights / logits
    return torch.einsum("nk,knchw->nchw", w, maps)


def assert_close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11 * float(b.abs().max()))


def one_hot(logits, target):
    out = torch.zeros_like(logits)
    out[:, target] = logits[:, target]
    return out


def test_clrp1_uniform_equals_two_pass(setup):
    model, x, logits, maps = setup
    t = 3
    s = logits[:, t : t + 1]
    dual_w = (s / (logits.shape[1] - 1)).expand_as(logits).clone()
    dual_w[:, t] = 0
    r_t, r_d = combine(maps, logits, one_hot(logits, t)), combine(maps, logits, dual_w)
    out = RelevanceEngine(model, input_bounds=B).run(
        x, t, "clrp1", kinds=("target", "dual", "contrast")
    )
    assert_close(out.input[0], r_t)
    assert_close(out.input[1], r_d)
    assert_close(out.input[2], r_t - r_d)
    assert_close(cw.clrp(model, x, t, input_bounds=B), (r_t - r_d).clamp(min=0))


def test_pairwise_equals_two_pass(setup):
    model, x, logits, maps = setup
    t, other = 1, 4
    dual_w = torch.zeros_like(logits)
    dual_w[:, other] = logits[:, t]
    ref = combine(maps, logits, one_hot(logits, t)) - combine(maps, logits, dual_w)
    assert_close(cw.clrp(model, x, t, variant=other, input_bounds=B), ref.clamp(min=0))


def test_sglrp_equals_two_pass(setup):
    model, x, logits, maps = setup
    t = 2
    y = torch.softmax(logits, 1)
    target_w = torch.zeros_like(logits)
    target_w[:, t] = y[:, t] * (1 - y[:, t])
    dual_w = y[:, t : t + 1] * y
    dual_w[:, t] = 0
    ref = combine(maps, logits, target_w) - combine(maps, logits, dual_w)
    out = RelevanceEngine(model, input_bounds=B).run(x, t, "sglrp", kinds=("contrast",))
    assert_close(out.input[0], ref)


def test_clrp1_logits_variant_equals_normalised_two_pass(setup):
    model, x, logits, maps = setup
    t = 0
    r_t = combine(maps, logits, one_hot(logits, t))
    dual_w = logits.abs()
    dual_w[:, t] = 0
    r_d = combine(maps, logits, dual_w)
    ref = r_t / r_t.sum((1, 2, 3), keepdim=True) - r_d / r_d.sum((1, 2, 3), keepdim=True)
    got = cw.clrp(model, x, t, input_bounds=B, dual_seed="logits")
    assert_close(got, ref.clamp(min=0))


def test_clrp2_equals_lrp_of_model_with_negated_row(setup):
    model, x, _, _ = setup
    t = 5
    last = model[-1]
    extended = copy.deepcopy(model)
    row = nn.Linear(last.in_features, last.out_features + 1, bias=False).to(DT)
    with torch.no_grad():
        row.weight.copy_(torch.cat([last.weight, -last.weight[t : t + 1]]))
    extended[-1] = row
    extended.eval()
    # dual: the virtual row -W_t seeded with S = z_t; lrp seeds it with its own logit -z_t
    r_dual = -cw.lrp(extended, x, last.out_features, input_bounds=B)
    r_t = cw.lrp(model, x, t, input_bounds=B)
    out = RelevanceEngine(model, input_bounds=B).run(
        x, t, "clrp2", kinds=("target", "dual", "contrast")
    )
    assert_close(out.input[1], r_dual)
    assert_close(out.input[2], r_t - r_dual)
    assert_close(cw.clrp(model, x, t, variant="clrp2", input_bounds=B), (r_t - r_dual).clamp(min=0))


@pytest.mark.parametrize("contrast", ["clrp1", "clrp2", "sglrp", 4])
def test_contrast_alone_equals_target_minus_dual(setup, contrast):
    model, x, _, _ = setup
    engine = RelevanceEngine(model, input_bounds=B)
    alone = engine.run(x, [1, 2], contrast, kinds=("contrast",), capture="all")
    both = engine.run(x, [1, 2], contrast, kinds=("dual", "target"), capture="all")
    assert_close(alone.input[0], both.input[1] - both.input[0])
    for name, cap in alone.layers.items():
        pair = both.layers[name].relevance
        assert_close(cap.relevance[0], pair[1] - pair[0])
    diff = both.seed_sums[1] - both.seed_sums[0]
    torch.testing.assert_close(alone.seed_sums[0], diff, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("contrast", ["lrp", "clrp1", "clrp2", "sglrp", 3])
def test_conservation_at_every_layer(contrast):
    model = make_cnn(bias=False, seed=21)
    x = make_input(3, seed=22)
    engine = RelevanceEngine(model, input_bounds=B)
    kinds = ("target",) if contrast == "lrp" else ("target", "dual")
    out = engine.run(x, [0, 1, 5], contrast, kinds=kinds, capture="all")
    assert list(out.layers) == engine.layer_names()
    sums = out.seed_sums
    assert bool((sums.abs() > 0).all())
    for name, maps in [("input", out.input), *((n, c.relevance) for n, c in out.layers.items())]:
        total = maps.flatten(2).sum(2)
        if contrast == "clrp2" and name == "11":
            # CLRP2's dual row -W_j is virtual: at the logit layer's output only the target shows
            torch.testing.assert_close(total, sums * torch.tensor([[1.0], [0.0]]))
            continue
        torch.testing.assert_close(total, sums, rtol=1e-4, atol=0)


def test_layer_activations_are_module_outputs(cnn, x):
    engine = RelevanceEngine(cnn, input_bounds=B)
    out = engine.run(x, 1, "clrp1", capture=["0", "3", "8", "11"])
    with torch.no_grad():
        a0 = cnn[0](x)
        a3 = cnn[3](cnn[2](torch.relu(a0)))
    torch.testing.assert_close(out.layers["0"].activation, a0)
    torch.testing.assert_close(out.layers["3"].activation, a3)
    torch.testing.assert_close(out.layers["11"].activation, out.logits)
    assert out.layers["8"].relevance.shape == (1, 2, 20)


@pytest.mark.parametrize("contrast", ["clrp1", "clrp2", "sglrp"])
def test_per_sample_targets_equal_single_sample_runs(contrast):
    model = make_cnn(bias=True, seed=31)
    x = make_input(3, seed=32)
    engine = RelevanceEngine(model, input_bounds=B)
    batch = engine.run(x, [1, 4, 1], contrast, kinds=("target", "dual", "contrast"))
    for i, t in enumerate([1, 4, 1]):
        one = RelevanceEngine(model, input_bounds=B).run(
            x[i : i + 1], t, contrast, kinds=("target", "dual", "contrast")
        )
        torch.testing.assert_close(batch.input[:, i], one.input[:, 0], rtol=1e-5, atol=1e-7)


def test_clrp2_with_a_convolutional_logit_layer():
    torch.manual_seed(33)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Conv2d(4, 5, 1, bias=False),
        nn.Flatten(),
    ).eval()
    x = make_input(1, seed=34)
    t = 2
    dense = nn.Sequential(*list(model)[:3], nn.Flatten(), nn.Linear(4, 5, bias=False)).eval()
    with torch.no_grad():
        dense[-1].weight.copy_(model[3].weight.reshape(5, 4))
    conv_out = cw.clrp(model, x, t, variant="clrp2", input_bounds=B)
    dense_out = cw.clrp(dense, x, t, variant="clrp2", input_bounds=B)
    torch.testing.assert_close(conv_out, dense_out)
    assert conv_out.abs().sum() > 0
