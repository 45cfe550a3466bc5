"""Property-based fuzz of every widget message handler of the Explorer (issue 10).

Arbitrary JSON from a front end (a hostile one included) must never raise out of a handler and
never leave the Explorer busy or showing a state other than its pickers'.
"""

from __future__ import annotations

import functools

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_explorer import NAMES, TinyNet
from test_robustness import consistent
from widget_messages import update

import clrp_widgets as cw
from clrp_widgets.widgets.explorer import Explorer

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
SMALL = st.integers(min_value=-3, max_value=40) | JSON
EVENTS = [
    "pixel",
    "neuron",
    "thumb",
    "page",
    "pick",
    "download",
    "element_click",
    "key",
    "nonsense",
]
MESSAGES = JSON | st.fixed_dictionaries(
    {"event": st.sampled_from(EVENTS)},
    optional={
        "channel": SMALL,
        "index": SMALL,
        "layer": st.sampled_from(["features.0", "features.3", "classifier.1"]) | JSON,
        "y": SMALL,
        "x": SMALL,
        "step": st.sampled_from([-1, 1, 0, 2, True]) | JSON,
        "format": st.sampled_from(["netcdf", "png"]) | JSON,
        "data": st.fixed_dictionaries({}, optional={"index": SMALL}) | JSON,
    },
)


@functools.cache
def explorer() -> Explorer:
    torch.manual_seed(3)
    ex = cw.Explainer(TinyNet().eval(), input_bounds=(0.0, 1.0), class_names=NAMES)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return Explorer(ex, images).wait()


def handlers(ex: Explorer):
    """(widget, callback) for every custom-message handler the Explorer's widgets run."""
    for widget in (ex.heatmap, ex.neuron_view, ex.thumbs, ex.gallery):
        for cb in widget._msg_callbacks.callbacks:
            yield widget, lambda content, w=widget, cb=cb: cb(w, content, [])
    for mark in (ex.top5.bars, ex.top5.track, ex.bars.bars):
        for cb in mark._element_click_handlers.callbacks:
            yield mark, lambda content, m=mark, cb=cb: cb(m, content)


@settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(st.tuples(st.integers(0, 100), MESSAGES), min_size=1, max_size=6))
def test_no_message_raises_or_leaves_a_stuck_or_inconsistent_explorer(messages):
    ex = explorer()
    every = list(handlers(ex))
    for which, content in messages:
        _, handle = every[which % len(every)]
        handle(content)  # must not raise
    assert ex._runner.wait(60)
    consistent(ex)


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    st.sampled_from(["target_picker", "class_b_picker", "layer_picker", "contrast_picker"]),
    st.integers(min_value=0, max_value=12),
    st.integers(min_value=-5, max_value=60),
)
def test_picker_updates_and_top_k_never_leave_a_stuck_state(picker, index, top_k):
    ex = explorer()
    widget = getattr(ex.controls, picker)
    if index < len(widget.options):
        update(widget, index=index)
    if 1 <= top_k <= 50:
        update(ex.controls.top_k_picker, value=top_k)
    assert ex._runner.wait(60)
    consistent(ex)
    assert ex.class_b != ex.target
