"""Pointing games on synthetic maps whose score is known by construction."""

import numpy as np
import pytest
import torch
import xarray as xr

from clrp_widgets.engine.errors import InputError
from clrp_widgets.metrics import PointingGame, StrictPointingGame
from clrp_widgets.metrics.maps import region_mask, tolerance_px

BOX = np.array([10, 20, 30, 40])  # y0, x0, y1, x1 (exclusive)


def spike(y, x, size=64, value=1.0):
    m = np.zeros((size, size))
    m[y, x] = value
    return m


def test_direction_and_names():
    assert PointingGame.higher_is_better and StrictPointingGame.higher_is_better
    assert PointingGame.name == "pointing_game"
    assert StrictPointingGame.name == "strict_pointing_game"


def test_all_inside_all_outside_and_half():
    inside = np.stack([spike(15, 25), spike(29, 39), spike(10, 20)])
    outside = np.stack([spike(60, 60), spike(0, 0), spike(50, 5)])
    boxes = np.tile(BOX, (3, 1))
    pg = PointingGame(tolerance=0)
    assert pg(inside, boxes).tolist() == [1.0, 1.0, 1.0]
    assert pg(outside, boxes).tolist() == [0.0, 0.0, 0.0]
    assert pg.score(np.concatenate([inside, outside]), np.tile(BOX, (6, 1))) == 0.5


def test_tolerance_default_scales_with_size():
    assert tolerance_px((224, 224), None) == (15.0, 15.0)
    assert tolerance_px((64, 128), None) == pytest.approx((15 * 64 / 224, 15 * 128 / 224))
    # 64 px: 4.29 px of tolerance. Row y1-1+4 = 33 is a hit, 34 is not.
    pg = PointingGame()
    assert pg(spike(33, 25), BOX).tolist() == [1.0]
    assert pg(spike(34, 25), BOX).tolist() == [0.0]
    assert pg(spike(25, 20 - 4), BOX).tolist() == [1.0]
    assert pg(spike(25, 20 - 5), BOX).tolist() == [0.0]
    # at 224 px the tolerance is exactly 15 px
    assert pg(spike(29 + 15, 25, size=224), BOX).tolist() == [1.0]
    assert pg(spike(29 + 16, 25, size=224), BOX).tolist() == [0.0]


def test_enlarged_box_is_a_rectangle():
    mask = region_mask(BOX[None], (64, 64), (2.0, 2.0))
    assert mask[8, 18] and mask[31, 41] and not mask[7, 18] and not mask[31, 42]
    assert mask.sum() == (20 + 4) * (20 + 4)


def test_union_of_several_boxes_of_one_class():
    boxes = [np.array([[0, 0, 5, 5], [50, 50, 60, 60]])]
    pg = PointingGame(tolerance=0)
    assert pg(spike(55, 55), boxes).tolist() == [1.0]
    assert pg(spike(30, 30), boxes).tolist() == [0.0]


def test_ties_count_the_expected_hit_and_constant_maps_score_chance():
    m = spike(15, 25) + spike(60, 60) + spike(0, 0) + spike(20, 30)  # 2 of 4 peaks inside
    assert PointingGame(tolerance=0)(m, BOX).tolist() == [0.5]
    flat = np.zeros((64, 64))
    assert PointingGame(tolerance=0)(flat, BOX)[0] == pytest.approx(400 / 64**2)


def test_map_types_and_colour_axis_are_accepted():
    m = np.stack([spike(15, 25), spike(60, 60)])
    colour = np.stack([m / 3] * 3, axis=1)  # (N, C, H, W): summed over colour
    da = xr.DataArray(colour, dims=("sample", "color", "y", "x"))
    boxes = np.tile(BOX, (2, 1))
    pg = PointingGame(tolerance=0)
    for maps in (m, torch.tensor(m), colour, torch.tensor(colour, dtype=torch.float32), da):
        assert pg(maps, boxes).tolist() == [1.0, 0.0]


def test_negative_maps_use_the_signed_maximum():
    m = -np.ones((64, 64))
    m[15, 25] = -0.5  # largest value, inside
    m[60, 60] = -100.0  # largest magnitude, outside
    assert PointingGame(tolerance=0)(m, BOX).tolist() == [1.0]


def test_per_class_average():
    values = np.array([1.0, 1.0, 1.0, 0.0])
    classes = np.array([0, 0, 0, 1])
    assert PointingGame().aggregate(values) == 0.75
    assert PointingGame(per_class=True).aggregate(values, classes) == 0.5
    with pytest.raises(InputError, match="classes"):
        PointingGame(per_class=True).aggregate(values)


def test_maps_without_box_are_skipped():
    pg = PointingGame(tolerance=0)
    values = pg(np.stack([spike(15, 25), spike(0, 0)]), [BOX[None], np.full((1, 4), -1)])
    assert values[0] == 1.0 and np.isnan(values[1])
    assert pg.aggregate(values) == 1.0


def test_strict_needs_every_salient_pixel_in_the_box():
    sp = StrictPointingGame(threshold=0.5)
    inside = spike(15, 25) + spike(20, 30, value=0.6)
    leaking = spike(15, 25) + spike(50, 50, value=0.6)  # salient pixel outside: miss
    faint_leak = spike(15, 25) + spike(50, 50, value=0.4)  # below threshold: still a hit
    peak_outside = spike(50, 50)
    zero = np.zeros((64, 64))
    negative = -np.ones((64, 64))
    maps = np.stack([inside, leaking, faint_leak, peak_outside, zero, negative])
    assert sp(maps, np.tile(BOX, (6, 1))).tolist() == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    # a plain pointing game counts the leaking map as a hit
    assert PointingGame(tolerance=0)(leaking, BOX).tolist() == [1.0]


def test_strict_threshold_and_tolerance():
    m = spike(15, 25) + spike(31, 25, value=0.6)  # 2 px below the box
    assert StrictPointingGame()(m, BOX).tolist() == [0.0]
    assert StrictPointingGame(tolerance=2)(m, BOX).tolist() == [1.0]
    assert StrictPointingGame(threshold=0.7)(m, BOX).tolist() == [1.0]
    with pytest.raises(InputError, match="threshold"):
        StrictPointingGame(threshold=0)


def test_bad_inputs_name_the_fix():
    with pytest.raises(InputError, match="one box"):
        PointingGame()(np.zeros((2, 8, 8)), np.tile(BOX, (3, 1)))
    with pytest.raises(InputError, match=r"\(N, H, W\)"):
        PointingGame()(np.zeros(8), BOX)
    with pytest.raises(InputError, match="NaN"):
        PointingGame()(np.full((8, 8), np.nan), BOX)
    with pytest.raises(InputError, match="tolerance"):
        PointingGame(tolerance=-1)(np.zeros((8, 8)), BOX)


def test_explainer_heatmaps_feed_the_metrics_directly():
    import clrp_widgets as cw
    from clrp_widgets.metrics import ClassSensitivity

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(4),
        torch.nn.Flatten(), torch.nn.Linear(4 * 16 * 16, 8),
    ).eval()  # fmt: skip
    s = cw.scenes(2, seed=0)
    x = s.tensor().repeat_interleave(2, dim=0)
    t = [int(c) for c in s.object_class.values[:, :2].ravel()]
    boxes = s.boxes.values[:, :2].reshape(-1, 4)
    tree = cw.Explainer(model, input_bounds=(0.0, 1.0)).explain(x, t, contrast="lrp", layers=None)
    heat = tree["input"]["heatmap"].sel(kind="target")  # DataArray (sample, y, x)
    direct = cw.lrp(model, x, t, input_bounds=(0.0, 1.0)).sum(1)
    np.testing.assert_array_equal(PointingGame()(heat, boxes), PointingGame()(direct, boxes))
    rel = tree["input"]["relevance"].sel(kind="target")  # (sample, color, y, x): colour summed
    np.testing.assert_allclose(
        ClassSensitivity()(rel[0::2], rel[1::2]), ClassSensitivity()(direct[0::2], direct[1::2])
    )
