"""Shared state the Explorer can trust (issue 10) and honest states (issue 11).

Stale-layer clicks, out-of-range channels, rapid submits, cancel, a display before any result,
class B apart from the target, baseline notes, unit names, the top-k chart and ``result``.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from test_explorer import NAMES, shown
from torch import nn
from widget_messages import bar_click, custom, update

import clrp_widgets as cw
from clrp_widgets.engine.errors import ConfigError
from clrp_widgets.results import open_tree
from clrp_widgets.widgets.charts import TopClassesChart
from clrp_widgets.widgets.explorer import Explorer
from clrp_widgets.widgets.runner import LatestRunner


def consistent(ex: Explorer) -> None:
    """Idle, and the pickers' state is the state the widgets show."""
    assert ex._runner.wait(30)
    assert not ex.busy and not ex.heatmap.busy and not ex.thumbs.busy
    assert ex.view == ex._shown_view
    state = ex.heatmap.state
    assert (state["target"], state["layer"], state["contrast"]) == (
        ex.target,
        ex.layer,
        ex.contrast,
    )
    assert (
        ex.controls.target_picker.value == ex.target and ex.controls.layer_picker.value == ex.layer
    )


def test_a_bar_click_right_after_a_layer_change_is_not_resolved_against_the_new_layer(ex):
    old = list(ex.bars.channels)  # features.3: 24 channels
    assert max(old[:20]) >= 8  # a channel that features.0 (8 channels) does not have
    with ex.session.lock:  # the worker cannot redraw the bars before the click arrives
        update(ex.controls.layer_picker, index=ex.layer_names.index("features.0"))
        bar_click(ex.bars.bars, int(np.argmax(old[:20])))
        custom(
            ex.thumbs, {"event": "thumb", "channel": ex.thumbs.channels[0], "layer": "features.3"}
        )
    ex.wait()
    assert ex.layer == "features.0" and ex.channels == [] and ex.error == ""
    consistent(ex)
    bar_click(ex.bars.bars, 0)  # the new layer's bars work
    ex.wait()
    assert ex.channels == [ex.bars.channels[0]] and ex.bars.layer == "features.0"


def test_a_listed_neuron_of_an_old_layer_is_ignored(ex):
    ex.select(pixel=[16, 16])
    listed = ex.heatmap.pixel_neurons
    assert listed and all(n["layer"] == "features.3" for n in listed)
    with ex.session.lock:
        update(ex.controls.layer_picker, index=ex.layer_names.index("features.0"))
        custom(
            ex.heatmap, {"event": "neuron", "channel": listed[0]["channel"], "layer": "features.3"}
        )
    ex.wait()
    assert ex.layer == "features.0" and ex.channels == []
    consistent(ex)


def test_out_of_range_channels_are_refused_and_never_poison_later_requests(ex):
    with pytest.raises(ConfigError, match=r"out of range for layer features\.3; use 0\.\.23"):
        ex.select(channels=[99])
    assert ex.channels == []
    custom(ex.heatmap, {"event": "neuron", "channel": 99, "layer": "features.3"})  # not listed
    custom(ex.thumbs, {"event": "thumb", "channel": 99, "layer": "features.3"})
    # features.0's size is not known before its tree: the worker checks and reverts
    with pytest.raises(ConfigError, match=r"out of range for layer features\.0; use 0\.\.7"):
        ex.select(layer="features.0", channels=[20])
    assert ex.error.startswith("ConfigError") and "features.0" in ex.heatmap.state["error"]
    consistent(ex)  # back on features.3, as shown
    ex.select(target=0, channels=[5])
    assert ex.error == "" and ex.heatmap.state["target"] == 0
    assert ex.neuron_view.state["channels"] == [5]
    consistent(ex)


def test_500_rapid_submits_end_with_busy_false():
    busy = []
    runner = LatestRunner(busy.append, lambda exc: None)
    for _ in range(500):
        runner.submit(lambda job: job.publish(lambda: None))
    assert runner.wait(30) and runner.idle
    assert busy[-1] is False


def test_500_rapid_clicks_leave_the_explorer_idle_and_consistent(ex):
    for i in range(500):
        bar_click(ex.bars.bars, i % 7)
    ex.wait()
    consistent(ex)
    assert ex.neuron_view.state["channels"] == ex.channels


def test_a_failed_request_is_shown_and_the_next_one_works(explainer, image):
    class Flaky(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.fail = explainer.model, False

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.fail:
                raise RuntimeError("the model broke")
            return self.net(x)

    flaky = Flaky().eval()
    ex = Explorer(cw.Explainer(flaky, input_bounds=(0.0, 1.0), class_names=NAMES), image).wait()
    before = ex.target
    flaky.fail = True
    ex.session._trees.items.clear()
    ex.session._explainers[ex.rules].engine.clear_cache()
    with pytest.raises(RuntimeError, match="the model broke"):
        ex.select(target=(before + 1) % 5)
    assert "the model broke" in ex.controls.status.value and ex.target == before  # reverted, shown
    consistent(ex)
    flaky.fail = False
    ex.select(target=(before + 1) % 5)
    assert ex.error == "" and ex.heatmap.state["target"] == (before + 1) % 5


def test_the_explorer_displays_before_the_model_answers(explainer, image):
    gate = threading.Event()

    class Slow(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = explainer.model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            gate.wait(30)
            return self.net(x)

    ex = Explorer(Slow().eval(), image)  # returns at once: the worker waits for the model
    assert ex.busy and ex.heatmap.busy and ex.heatmap.maps == b""
    assert ex.heatmap.panel_titles == ["computing…"] and ex.heatmap.image != b""
    assert not ex.controls.cancel_button.disabled
    gate.set()
    ex.wait()
    assert ex.map_version >= 1 and not ex.busy and ex.controls.cancel_button.disabled
    assert ex.class_names == [f"class {i}" for i in range(5)]  # a plain module: numbered
    assert ex.controls.layer_picker.options[0] == ("net.features.0 (Conv2d)", "net.features.0")


def test_cancel_stops_the_request_and_keeps_the_shown_view(ex):
    before = ex.view
    with ex.session.lock:
        update(ex.controls.target_picker, index=4)
        assert ex.busy
        ex.cancel()
    assert ex._runner.wait(30)
    assert ex.view == before and "cancelled" in ex.controls.status.value
    consistent(ex)
    ex.select(target=4)
    assert ex.heatmap.state["target"] == 4


def test_class_b_never_equals_the_target(ex):
    ex.select(contrast="pairwise", class_b=3, target=0)
    update(ex.controls.class_b_picker, index=0)  # B = the target: refused in place
    ex.wait()
    assert ex.class_b == 3 and ex.controls.class_b_picker.value == 3
    assert "must differ from the target" in ex.controls.note.value
    assert ex.heatmap.panel_titles[0] == f"{NAMES[0]} rather than {NAMES[3]}: {NAMES[0]}"
    update(ex.controls.target_picker, index=3)  # the target moved onto B: B moves away
    ex.wait()
    assert ex.target == 3 and ex.class_b != 3 and "class B is now" in ex.controls.note.value
    assert ex.heatmap.panel_titles[0] == (f"{NAMES[3]} rather than {NAMES[ex.class_b]}: {NAMES[3]}")
    with pytest.raises(ConfigError, match="must differ"):
        ex.select(class_b=3)
    consistent(ex)


def test_baselines_say_what_the_neuron_panel_shows(ex):
    ex.select(contrast="gradient", channels=[ex.bars.channels[0]])
    assert "neuron panel shows CLRP1" in ex.bars.figure.title
    assert "neuron panel shows CLRP1" in ex.neuron_view.caption
    ex.select(contrast="clrp2")
    assert "neuron panel" not in ex.bars.figure.title


def test_layers_show_their_type_and_units_their_kind(ex):
    labels = dict((v, k) for k, v in ex.controls.layer_picker.options)
    assert labels["features.3"] == "features.3 (Conv2d)"
    assert labels["classifier.3"] == "classifier.3 (Linear)"
    ex.select(layer="classifier.3")  # the output layer: one unit per class
    assert sorted(ex.bars.bars.x) == sorted(NAMES)
    assert ex.bars.figure.axes[0].label == "class" and "classes by" in ex.bars.figure.title
    ex.select(layer="classifier.1")  # a dense hidden layer: units, not channels
    assert all(x.startswith("u") for x in ex.bars.bars.x)
    assert ex.bars.figure.axes[0].label == "unit" and "units by" in ex.bars.figure.title
    ex.select(channels=[ex.bars.channels[0]])
    assert ex.neuron_view.panel_titles[0].startswith(f"u{ex.bars.channels[0]} ")


def test_top_k_search_and_every_row_clickable(ex):
    update(ex.controls.top_k_picker, value=3)
    assert len(ex.top5.classes) == 3 and "top-3" in ex.top5.figure.title
    update(ex.controls.class_search, value=f"{NAMES[2]} (2)")
    ex.wait()
    assert ex.target == 2 and ex.heatmap.state["target"] == 2


def test_tiny_probabilities_get_a_scaled_axis_and_full_length_rows():
    chart = TopClassesChart()
    probs = np.array([2e-3, 1e-3, 5e-5, 1e-6, 1e-6, 0.99])
    chart.show(probs[:5] / 10, ["a", "b", "c", "d", "e"], target=0)
    high = chart.bars.scales["y"].max
    assert high == pytest.approx(2e-4 * 1.1)  # the axis ends just past the largest bar
    assert list(chart.track.y) == [high] * 5  # each row is clickable along its full length
    picked = []
    chart.on_click(picked.append)
    bar_click(chart.track, 4)
    assert picked == [chart.classes[4]]
    assert chart.bars.x[3].startswith("d ") and "e-" in chart.bars.x[3]  # 1e-7 is not "0%"
    chart.show(probs, list("abcdef"), target=5, independent=True)
    assert "independent" in chart.axis.label


def test_result_is_the_view_on_screen(ex, tmp_path):
    a, b = ex.bars.channels[:2]
    ex.select(channels=[a, b], pixel=[3, 4])
    tree = ex.result
    view = tree["view"]
    np.testing.assert_array_equal(view["decision_map"].values, shown(ex.heatmap)[0])
    np.testing.assert_array_equal(view["channel_maps"].values, shown(ex.neuron_view)[:2])
    assert view["channel"].values.tolist() == [a, b]
    assert view.attrs["target"] == ex.target and view.attrs["layer"] == "features.3"
    assert view.attrs["target_name"] == NAMES[ex.target]
    assert "features.3" in tree["layers"].children and tree.attrs["contrast"] == "clrp1"
    tree["logits"].values[:] = 0  # a copy: the Explorer's cache is untouched
    assert np.abs(ex.result["logits"].values).sum() > 0
    tree.to_netcdf(tmp_path / "view.nc")
    back = open_tree(tmp_path / "view.nc")
    np.testing.assert_array_equal(back["view"]["decision_map"].values, view["decision_map"].values)


def test_snapshot_embeds_the_top_and_the_selected_channels_and_help_explains(ex):
    snap = ex.neuron_view.snapshot
    assert snap["channels"] == ex.thumbs.channels and snap["layer"] == "features.3"
    assert snap["bar_channels"] == ex.bars.channels
    extra = next(c for c in ex.bars.channels if c not in ex.thumbs.channels)
    ex.select(channels=[ex.thumbs.channels[0], extra])
    snap = ex.neuron_view.snapshot
    assert snap["channels"] == [*ex.thumbs.channels, extra]
    assert ex.neuron_view.panel_legends[2].startswith("red where A is stronger")
    assert "all other classes together" in ex.heatmap.help
    ex.select(contrast="pairwise", class_b=4)
    assert f"class B ({NAMES[4]})" in ex.heatmap.help
