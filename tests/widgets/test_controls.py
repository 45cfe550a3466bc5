"""The Explorer's controls on their own: they report a user's picks and never decide or echo."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from widget_messages import custom, update

from clrp_widgets.widgets.controls import Controls
from clrp_widgets.widgets.labels import CONTRASTS

NAMES = ["disc", "ring", "cross"]
STATE = {
    "target": 1,
    "class_b": 2,
    "contrast": "pairwise",
    "rules": "paper",
    "layer": "conv2",
    "neuron_mode": "neuron",
    "top_k": 3,
}


@pytest.fixture
def said():
    return []


@pytest.fixture
def controls(said):
    c = Controls(
        CONTRASTS,
        ["paper", "epsilon"],
        5,
        on_pick=lambda name, value: said.append(("pick", name, value)),
        on_cancel=lambda: said.append(("cancel",)),
        on_export=lambda suffix, name: said.append(("export", suffix, name)),
        on_upload=lambda name, data: said.append(("upload", name, data)),
    )
    c.fill_classes(NAMES)
    c.fill_layers([("conv1 (Conv2d)", "conv1"), ("conv2 (Conv2d)", "conv2")])
    return c


def test_showing_the_state_sets_every_picker_without_a_pick(controls, said):
    controls.show(STATE, NAMES)
    assert said == []
    assert controls.target_picker.value == 1 and controls.class_b_picker.value == 2
    assert controls.class_search.value == "ring (1)"
    assert controls.contrast_picker.value == "pairwise" and controls.rules_picker.value == "paper"
    assert controls.layer_picker.value == "conv2" and controls.mode_picker.value == "neuron"
    assert controls.top_k_picker.value == 3
    assert controls.class_b_picker.layout.display is None  # class B shown for "pairwise"
    controls.show({**STATE, "contrast": "clrp1"}, NAMES)
    assert controls.class_b_picker.layout.display == "none" and said == []


@pytest.mark.parametrize(
    ("picker", "index", "name", "value"),
    [
        ("target_picker", 2, "target", 2),
        ("class_b_picker", 0, "class_b", 0),
        ("layer_picker", 0, "layer", "conv1"),
        ("rules_picker", 1, "rules", "epsilon"),
        ("mode_picker", 0, "neuron_mode", "decision"),
    ],
)
def test_a_users_pick_is_reported_once(controls, said, picker, index, name, value):
    controls.show(STATE, NAMES)
    update(getattr(controls, picker), index=index)
    assert said == [("pick", name, value)]


def test_search_top_k_buttons_and_upload_are_reported(controls, said):
    update(controls.class_search, value="cross (2)")
    update(controls.class_search, value="cro")  # not an option yet: nothing
    update(controls.top_k_picker, value=7)
    controls.export_name.value = "mine"
    custom(controls.png_button, {"event": "click"})
    custom(controls.netcdf_button, {"event": "click"})
    custom(controls.cancel_button, {"event": "click"})
    upload = {"name": "a.png", "type": "image/png", "size": 3, "content": memoryview(b"png")}
    controls.upload.set_trait("value", ({**upload, "last_modified": datetime.now(timezone.utc)},))
    assert said == [
        ("pick", "target", 2),
        ("pick", "top_k", 7),
        ("export", ".png", "mine"),
        ("export", ".nc", "mine"),
        ("cancel",),
        ("upload", "a.png", b"png"),
    ]


def test_busy_stage_and_error_are_said(controls):
    controls.show_busy(True, failed=False)
    assert not controls.cancel_button.disabled and controls.status.value == "computing…"
    controls.show_stage("neuron bars", 0.4)
    assert controls.progress.value == 0.4 and controls.status.value == "computing: neuron bars…"
    controls.show_busy(False, failed=False)
    assert controls.cancel_button.disabled and controls.progress.value == 0.0
    assert controls.status.value == ""
    controls.show_error("ConfigError: no such layer")
    controls.show_busy(False, failed=True)
    assert controls.status.value == "error: ConfigError: no such layer"
    assert controls.progress.bar_style == "danger"
