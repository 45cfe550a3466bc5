"""The Explorer's parts on their own: canvas widgets, charts, numpy helpers, the request runner."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from widget_messages import bar_click, custom, update

from clrp_widgets.widgets.charts import NeuronBarsChart, TopClassesChart, unique_labels
from clrp_widgets.widgets.heatmap import HeatmapView
from clrp_widgets.widgets.maps import (
    compare,
    display_image,
    downsample,
    neurons_at,
    render_rgb,
    top_channels,
)
from clrp_widgets.widgets.runner import LatestRunner
from clrp_widgets.widgets.thumbnails import ThumbnailGrid

EVIL = "<img src=x onerror=alert(1)>"


def test_heatmap_sends_image_and_maps_as_binary_buffers():
    view = HeatmapView()
    rgb = np.random.default_rng(0).random((5, 7, 3))
    view.set_image(rgb)
    assert (view.height, view.width) == (5, 7)
    assert isinstance(view.image, bytes) and len(view.image) == 5 * 7 * 3
    back = np.frombuffer(view.image, np.uint8).reshape(5, 7, 3)
    assert np.array_equal(back, np.round(rgb * 255).astype(np.uint8))
    maps = [np.full((5, 7), 1.5), np.arange(35.0).reshape(5, 7)]
    view.set_maps(maps, ["a", EVIL], ["", "signed"])
    assert isinstance(view.maps, bytes)
    got = np.frombuffer(view.maps, np.float32).reshape(2, 5, 7)
    assert np.array_equal(got[1], maps[1].astype(np.float32))
    assert view.panel_titles == ["a", EVIL] and view.panel_modes == ["", "signed"]
    state = view.get_state()
    assert isinstance(state["maps"], (bytes, memoryview))
    with pytest.raises(ValueError, match="image's"):
        view.set_maps([np.zeros((4, 4))], ["wrong size"])


def test_heatmap_pixel_clicks_reach_python():
    view = HeatmapView()
    view.set_image(np.zeros((8, 8, 3), np.uint8))
    pixels = []
    view.on_pixel(lambda y, x: pixels.append((y, x)))
    custom(view, {"event": "pixel", "y": 3, "x": 7})
    custom(view, {"event": "pixel", "y": 8, "x": 0})  # outside: ignored
    custom(view, {"event": "neuron", "channel": 12})  # the Explorer's to handle
    custom(view, {"event": "something else"})
    assert pixels == [(3, 7)]


def test_heatmap_front_end_controls_update_python_state():
    view = HeatmapView()
    update(view, opacity=0.25, mode="signed", show_image=False)
    assert (view.opacity, view.mode, view.show_image) == (0.25, "signed", False)


def test_thumbnails_binary_maps_and_clicks():
    grid = ThumbnailGrid()
    maps = np.random.default_rng(1).standard_normal((3, 4, 6))
    grid.set_maps(np.zeros((4, 6, 3), np.uint8), maps, [5, 9, 2], ["c5", "c9", EVIL])
    assert (grid.height, grid.width) == (4, 6)
    assert np.frombuffer(grid.maps, np.float32).shape == (72,)
    assert len(grid.image) == 72 and grid.labels[2] == EVIL
    clicked = []
    grid.on_click(clicked.append)
    custom(grid, {"event": "thumb", "channel": 9})
    custom(grid, {"event": "thumb", "channel": 77})  # not shown: ignored
    assert clicked == [9]


def test_top_classes_chart_orders_highlights_and_clicks():
    chart = TopClassesChart()
    probs = np.array([0.1, 0.5, 0.05, 0.2, 0.1, 0.05])
    names = ["a", EVIL, "c", "d", "a", "f"]
    chart.show(probs, names, target=3)
    assert chart.classes == [1, 3, 0, 4, 2]
    assert chart.bars.x[0].startswith(EVIL)  # raw text: bqplot draws it with SVG text
    assert chart.bars.colors[1] == "#e6550d" and chart.bars.colors[0] != "#e6550d"
    picked = []
    chart.on_click(picked.append)
    bar_click(chart.bars, 1)
    bar_click(chart.bars, 99)  # out of range: ignored
    assert picked == [3]
    assert unique_labels(["x", "x", "y"]) == ["x", "x (2)", "y"]


def test_neuron_bars_group_kinds_and_map_clicks_to_channels():
    chart = NeuronBarsChart()
    series = {
        "target": np.array([3.0, 1, 0]),
        "dual": np.array([1.0, 1, 2]),
        "contrast": np.array([2.0, 0, -2]),
    }
    chart.show([7, 0, 4], series, "layer x")
    assert chart.bars.x.tolist() == ["c7", "c0", "c4"]
    assert np.asarray(chart.bars.y).shape == (3, 3)
    assert list(chart.bars.labels) == ["target", "dual", "contrast = target − dual"]
    picked = []
    chart.on_click(lambda channel, layer: picked.append((channel, layer)))
    bar_click(chart.bars, 2)
    assert picked == [(4, None)]
    chart.select([4, 7])
    assert sorted(chart.bars.selected) == [0, 2]


def test_top_channels_takes_both_ends():
    values = np.arange(50.0) - 10  # 10 negative channels
    shown = top_channels(values, n=20)
    assert shown[:3].tolist() == [49, 48, 47]
    assert len(shown) == 30 and shown[-1] == 0 and all(values[shown[20:]] < 0)
    small = np.array([1.0, -3, 2])
    assert top_channels(small, n=20).tolist() == [2, 0, 1]
    sparse = np.zeros(50)
    sparse[[4, 9]], sparse[7] = [2.0, 1.0], -1.0  # mostly dead channels
    assert top_channels(sparse, n=20).tolist() == [4, 9, 7]  # no zero one among the "top"


def test_neurons_at_maps_pixels_to_layer_cells_and_their_neighbours():
    rel = np.zeros((4, 8, 8))
    rel[2, 5, 1] = 5.0  # the cell above pixel (40, 10) of a 64 x 64 image
    rel[1, 6, 2] = 3.0  # a neighbouring cell
    rel[1, 5, 0] = -1.0
    rel[0, 0, 7] = 9.0  # far away
    chans, values = neurons_at(rel, y=40, x=10, size=(64, 64), k=2)
    assert chans.tolist() == [2, 1] and values.tolist() == [5.0, 2.0]
    chans, values = neurons_at(rel, y=40, x=10, size=(64, 64), k=2, radius=0)
    assert chans.tolist() == [2, 0] and values.tolist() == [5.0, 0.0]


def test_compare_correlation_and_positive_overlap():
    a = np.array([[1.0, 0.0], [0.0, 0.0]])
    b = np.array([[0.0, 0.0], [0.0, 1.0]])
    assert compare(a, a) == pytest.approx({"correlation": 1.0, "overlap": 1.0})
    assert compare(a, b)["overlap"] == 0.0 and compare(a, b)["correlation"] < 0
    assert compare(a, -a)["correlation"] == pytest.approx(-1.0)
    assert compare(a, 3 * a)["overlap"] == pytest.approx(1.0)  # scale-free
    assert compare(np.zeros((2, 2)), a) == {"correlation": 0.0, "overlap": 0.0}


def test_display_image_undoes_normalisation_with_bounds():
    img = np.random.default_rng(2).random((3, 4, 4))
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = (img - mean[:, None, None]) / std[:, None, None]
    bounds = (list(-mean / std), list((1 - mean) / std))
    out = display_image(x, bounds)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - np.round(img.transpose(1, 2, 0) * 255)).max() <= 1
    assert display_image(np.ones((1, 2, 2)), None).shape == (2, 2, 3)


def test_downsample_block_averages():
    a = np.arange(16.0).reshape(4, 4)
    assert downsample(a, 2).tolist() == [[2.5, 4.5], [10.5, 12.5]]
    assert downsample(a, 8) is a


def test_render_rgb_blends_like_the_front_end():
    image = np.full((1, 2, 3), 100, np.uint8)
    out = render_rgb(np.array([[0.0, 2.0]]), image, "positive", opacity=1.0)
    assert out[0, 0].tolist() == [178, 178, 178]  # no relevance: the image's washed-out grey
    assert out[0, 1].tolist() == [128, 0, 38]  # the strongest: the pure sequential end colour
    signed = render_rgb(np.array([[-1.0, 1.0]]), None, "signed")
    assert signed[0, 0].tolist() == [5, 48, 97] and signed[0, 1].tolist() == [103, 0, 31]


def test_runner_last_request_wins_and_discards_stale_results():
    busy, errors, shown = [], [], []
    runner = LatestRunner(busy.append, errors.append)
    started = threading.Event()

    def job(tag):
        def run(j):
            started.set()
            time.sleep(0.05)
            j.publish(lambda: shown.append(tag))

        return run

    runner.submit(job(0))
    started.wait(5)
    for tag in range(1, 6):  # rapid clicks while job 0 computes
        runner.submit(job(tag))
    assert runner.wait(10)
    assert shown[-1] == 5
    assert shown == sorted(shown) and len(shown) <= 2  # 0 may finish first; 1..4 never run
    assert runner.completed <= 2 and busy[0] is True and busy[-1] is False
    assert errors == []


def test_runner_discards_a_result_that_a_newer_request_overtook():
    runner = LatestRunner(lambda b: None, lambda e: None)
    shown, gate = [], threading.Event()

    def slow(j):
        gate.wait(5)
        j.publish(lambda: shown.append("old"))

    runner.submit(slow)
    time.sleep(0.05)
    runner.submit(lambda j: j.publish(lambda: shown.append("new")))
    gate.set()
    assert runner.wait(10)
    assert shown == ["new"] and runner.discarded == 1


def test_runner_reports_errors_and_keeps_serving():
    errors, shown = [], []
    runner = LatestRunner(lambda b: None, errors.append)

    def bad(j):
        raise RuntimeError("boom")

    runner.submit(bad)
    assert runner.wait(10)
    runner.submit(lambda j: j.publish(lambda: shown.append(1)))
    assert runner.wait(10)
    assert [str(e) for e in errors] == ["boom"] and shown == [1]
