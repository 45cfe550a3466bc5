"""Ablation and region perturbation on a linear model whose logit drop is known exactly."""

import numpy as np
import pytest
import torch
from torch import nn

from clrp_widgets.engine.errors import InputError
from clrp_widgets.metrics import Ablation, RegionPerturbation


def linear_model(weight_maps):
    """Logit k = Σ_pixels weight_maps[k] · x (one colour channel, no bias)."""
    w = torch.as_tensor(np.asarray(weight_maps), dtype=torch.float32)
    lin = nn.Linear(w[0].numel(), len(w), bias=False)
    lin.weight.data = w.reshape(len(w), -1)
    return nn.Sequential(nn.Flatten(), lin).eval()


def test_ablation_drop_is_the_evidence_under_the_patch():
    w = np.zeros((2, 32, 32))
    w[0, 5:15, 5:15] = 1.0  # class 0 lives in a 10×10 square
    w[1, 20:30, 20:30] = 2.0
    model = linear_model(w)
    x = torch.ones(3, 1, 32, 32)
    maps = np.zeros((3, 32, 32))
    maps[0, 10, 10] = 1  # 9×9 patch fully inside class 0's square: drop 81
    maps[1, 5, 5] = 1  # corner of the square: 5×5 of the patch inside: drop 25
    maps[2, 0, 31] = 1  # far away: no drop
    drops = Ablation()(model, x, maps, targets=0, mean=[0.0])
    np.testing.assert_allclose(drops, [81.0, 25.0, 0.0])
    assert Ablation(patch=3)(model, x[:1], maps[:1], 0, mean=0.0).tolist() == [9.0]
    # class 1 (weight 2) with the patch at its centre
    m1 = np.zeros((1, 32, 32))
    m1[0, 25, 25] = 1
    assert Ablation()(model, x[:1], m1, 1, mean=0.0).tolist() == [2.0 * 81]
    assert Ablation.higher_is_better and Ablation.needs_model


def test_ablation_default_fill_is_the_batch_mean_and_model_is_untouched():
    w = np.ones((1, 8, 8))
    model = linear_model(w)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.zeros(2, 1, 8, 8)
    x[1] = 2.0  # batch mean = 1
    maps = np.zeros((2, 8, 8))
    maps[:, 4, 4] = 1
    drops = Ablation(patch=2)(model, x, maps, 0)
    np.testing.assert_allclose(drops, [-4.0, 4.0])  # 0 -> 1 raises, 2 -> 1 lowers
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_region_perturbation_morf_and_lerf_known_curves():
    w = np.zeros((1, 8, 8))
    w[0, :2, :2] = 1.0  # all evidence in the top-left 2×2 region of a 4×4 grid
    model = linear_model(w)
    x = torch.ones(1, 1, 8, 8)
    good = w.copy()
    morf = RegionPerturbation("morf", patch=2, steps=None)
    curve = morf.curves(model, x, good, 0, mean=0.0)[0]
    np.testing.assert_allclose(curve, [4.0] + [0.0] * 16)
    np.testing.assert_allclose(morf(model, x, good, 0, mean=0.0), [16 * 4 / 17])
    lerf = RegionPerturbation("lerf", patch=2, steps=None)
    np.testing.assert_allclose(lerf.curves(model, x, good, 0, mean=0.0)[0], [4.0] * 16 + [0.0])
    np.testing.assert_allclose(lerf(model, x, good, 0, mean=0.0), [4 / 17])
    assert morf.higher_is_better and not lerf.higher_is_better


def test_region_perturbation_steps_group_regions_and_a_bad_map_scores_lower():
    w = np.zeros((1, 8, 8))
    w[0, 6:, 6:] = 1.0
    model = linear_model(w)
    x = torch.ones(2, 1, 8, 8)
    maps = np.stack([w[0], -w[0]])  # right map, inverted map
    rp = RegionPerturbation("morf", patch=2, steps=4)  # 16 regions, 4 per step
    curves = rp.curves(model, x, maps, [0, 0], mean=0.0)
    np.testing.assert_allclose(curves[0], [4, 0, 0, 0, 0])
    np.testing.assert_allclose(curves[1], [4, 4, 4, 4, 0])
    aopc = rp(model, x, maps, 0, mean=0.0)
    assert aopc[0] > aopc[1]
    # default grid: 8×8 regions of side H // 8
    assert RegionPerturbation(steps=None).curves(model, x[:1], maps[:1], 0).shape == (1, 65)


def test_perturbation_bad_inputs():
    model = linear_model(np.ones((1, 8, 8)))
    with pytest.raises(InputError, match="do not match"):
        Ablation()(model, torch.ones(1, 1, 8, 8), np.zeros((1, 4, 4)), 0)
    with pytest.raises(InputError, match="float"):
        Ablation()(model, torch.ones(1, 1, 8, 8, dtype=torch.int64), np.zeros((1, 8, 8)), 0)
    with pytest.raises(InputError, match="one target"):
        Ablation()(model, torch.ones(2, 1, 8, 8), np.zeros((2, 8, 8)), [0, 0, 0])
    with pytest.raises(InputError, match="order"):
        RegionPerturbation("random")
    with pytest.raises(InputError, match="patch"):
        Ablation(patch=0)
