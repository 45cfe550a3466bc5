"""Class sensitivity on map pairs whose similarity is known by construction."""

import numpy as np
import pytest
import torch

from clrp_widgets.engine.errors import InputError
from clrp_widgets.metrics import ClassSensitivity


def blob(y, x, size=32):
    yy, xx = np.mgrid[:size, :size]
    return np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 8.0)


def test_identical_maps_score_one_and_scaled_copies_too():
    a = np.stack([blob(8, 8), blob(20, 10)])
    cs = ClassSensitivity()
    np.testing.assert_allclose(cs(a, a), [1.0, 1.0])
    np.testing.assert_allclose(cs(a, 3 * a + 1), [1.0, 1.0])
    np.testing.assert_allclose(cs(a, -a), [-1.0, -1.0])
    assert not ClassSensitivity.higher_is_better and ClassSensitivity.unit == "pair"


def test_disjoint_maps_are_uncorrelated_or_negative():
    a, b = blob(6, 6), blob(25, 25)
    r = ClassSensitivity()(a, b)[0]
    assert -0.2 < r < 0.0
    # two independent noise maps: near zero
    rng = np.random.default_rng(0)
    n = rng.normal(size=(2, 50, 64, 64))
    assert abs(ClassSensitivity().score(n[0], n[1])) < 0.02


def test_constant_maps_are_nan_and_skipped():
    a = np.stack([blob(8, 8), np.zeros((32, 32))])
    values = ClassSensitivity()(a, np.stack([blob(8, 8), blob(8, 8)]))
    assert values[0] == pytest.approx(1.0) and np.isnan(values[1])
    assert ClassSensitivity().aggregate(values) == pytest.approx(1.0)


def test_ssim():
    a = blob(8, 8)
    cs = ClassSensitivity("ssim")
    assert cs(a, a)[0] == pytest.approx(1.0)
    assert cs(a, 5 * a)[0] == pytest.approx(1.0)  # each map is min-max scaled first
    far, near = cs(a, blob(25, 25))[0], cs(a, blob(9, 9))[0]
    assert far < 0.7 and far < near < 1.0
    assert cs(torch.tensor(a), torch.tensor(a))[0] == pytest.approx(1.0)


def test_sensitivity_bad_inputs():
    with pytest.raises(InputError, match="similarity"):
        ClassSensitivity("cosine")
    with pytest.raises(InputError, match="shape"):
        ClassSensitivity()(np.zeros((1, 8, 8)), np.zeros((2, 8, 8)))
