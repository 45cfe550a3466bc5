"""The Explorer's state machine on its own (``widgets/state.py``): every reset rule, no widget."""

from __future__ import annotations

import numpy as np
import pytest

from clrp_widgets.engine.errors import ConfigError
from clrp_widgets.widgets.state import Choices, next_view, toggled

NAMES = ["disk", "square", "ring", "bar"]
NOW = {
    "target": 0,
    "contrast": "clrp1",
    "class_b": 1,
    "rules": "paper",
    "layer": "conv2",
    "channels": [3, 5],
    "pixel": [4, 4],
    "neuron_mode": "decision",
    "image": 0,
}


def choices(**kwargs) -> Choices:
    base = {
        "contrasts": ["lrp", "clrp1", "pairwise", "gradient"],
        "rules": ["paper", "epsilon"],
        "layers": ["conv1", "conv2"],
        "n_images": 3,
        "class_names": NAMES,
        "n_units": {"conv1": 4, "conv2": 8}.get,
        "probs": np.array([0.1, 0.2, 0.6, 0.1]),
    }
    return Choices(**{**base, **kwargs})


def test_a_plain_change_passes_unchanged():
    step = next_view(NOW, {"contrast": "lrp"}, choices())
    assert step.changes == {"contrast": "lrp"} and step.note == "" and not step.refused_b


def test_a_new_layer_clears_the_channels_the_same_layer_keeps_them():
    assert next_view(NOW, {"layer": "conv1"}, choices()).changes == {
        "layer": "conv1",
        "channels": [],
    }
    assert next_view(NOW, {"layer": "conv2"}, choices()).changes == {"layer": "conv2"}
    both = next_view(NOW, {"layer": "conv1", "channels": [2]}, choices()).changes
    assert both == {"layer": "conv1", "channels": [2]}  # asked for together: kept


def test_a_new_image_resets_pixel_channels_target_and_class_b():
    step = next_view(NOW, {"image": 2}, choices())
    assert step.changes == {"image": 2, "pixel": [], "channels": [], "target": -1, "class_b": -1}
    assert next_view(NOW, {"image": 0}, choices()).changes == {"image": 0}


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        ({"contrast": "clrp9"}, "contrast"),
        ({"rules": "zennit"}, "rules"),
        ({"layer": "fc"}, "layer"),
        ({"image": 3}, "0..2"),
        ({"image": True}, "image"),
        ({"channels": [8]}, "0..7"),
        ({"layer": "conv1", "channels": [4]}, "0..3"),  # checked against the new layer
        ({"channels": [-1]}, "channel"),
        ({"zoom": 2}, "zoom"),
    ],
)
def test_invalid_requests_name_the_valid_choices(request_, words):
    with pytest.raises(ConfigError, match=words):
        next_view(NOW, request_, choices())


def test_layers_and_units_not_known_yet_are_not_checked():
    lazy = choices(layers=[], n_units=lambda _: None)
    assert next_view(NOW, {"layer": "anything", "channels": [99]}, lazy).changes["channels"] == [99]


def test_class_b_picked_equal_to_the_target_is_refused_the_rest_applies():
    step = next_view(NOW, {"class_b": 0}, choices())
    assert step.changes == {} and step.refused_b and "must differ" in step.note
    step = next_view(NOW, {"class_b": 0, "contrast": "pairwise"}, choices())
    assert step.changes == {"contrast": "pairwise"} and step.refused_b


def test_a_target_moved_onto_class_b_moves_b_to_the_most_probable_other_class():
    step = next_view(NOW, {"target": 1}, choices())
    assert step.changes == {"target": 1, "class_b": 2}  # ring: probability 0.6
    assert "class B is now ring" in step.note and not step.refused_b
    step = next_view(NOW, {"target": 2, "class_b": 2}, choices())
    assert step.changes["class_b"] == 1  # both asked: B moves off the target
    no_probs = next_view({**NOW, "class_b": 2}, {"target": 2}, choices(probs=None))
    assert no_probs.changes["class_b"] == 0  # index order before probabilities are known


def test_a_target_of_minus_one_means_the_most_probable_and_never_clashes():
    assert next_view({**NOW, "class_b": -1}, {"target": -1}, choices()).note == ""


def test_toggling_channels_keeps_the_last_two():
    assert toggled([], 3) == [3]
    assert toggled([3], 5) == [3, 5]
    assert toggled([3, 5], 7) == [5, 7]
    assert toggled([3, 5], 3) == [5]
    assert toggled([5], 5) == []
