"""``stoppable``: a stop at any forward or backward operation leaves nothing half-done."""

from __future__ import annotations

import threading

import pytest
import torch
from engine_nets import assert_untouched, make_cnn, make_input, snapshot
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

import clrp_widgets as cw
from clrp_widgets.engine.errors import CLRPError
from clrp_widgets.engine.interrupt import Stopped, stoppable


def in_backward() -> bool:
    return torch._C._current_graph_task_id() != -1


@pytest.mark.parametrize("where", ["forward", "backward"])
@pytest.mark.parametrize("call", ["explain", "conditional", "neuron"])
def test_a_stop_leaves_the_model_and_the_next_map_exact(where, call):
    model, x = make_cnn(), make_input(1)
    want = cw.Explainer(make_cnn(), input_bounds=(0.0, 1.0))  # same weights: an independent oracle
    ex = cw.Explainer(model, input_bounds=(0.0, 1.0))
    run = {
        "explain": lambda e: e.explain(x, 2, contrast="clrp1", layers=["3"])["input"]["heatmap"],
        "conditional": lambda e: e.conditional(x, 2, "3", [1, 5]),
        "neuron": lambda e: e.neuron(x, "3", 4, contrast="layer", layers=None)["input"]["heatmap"],
    }[call]
    before = snapshot(model)
    if where == "backward":
        ex.predict(x)  # so that the stopped call's forward pass is
        ex.explain(x, 0, layers=None)  # cached and the stop lands in a backward pass
    seen = {}

    def stop() -> bool:
        seen["backward"] = in_backward()
        return where == "forward" or seen["backward"]

    with pytest.raises(Stopped, match="stopped part-way") as info, stoppable(stop):
        run(ex)
    assert isinstance(info.value, CLRPError)
    assert seen["backward"] == (where == "backward")
    assert _get_current_dispatch_mode_stack() == []
    assert_untouched(model, before)
    torch.testing.assert_close(
        torch.as_tensor(run(ex).values), torch.as_tensor(run(want).values), rtol=0, atol=0
    )
    assert_untouched(model, before)


def test_only_the_thread_that_asked_is_stopped():
    out = {}

    def other() -> None:
        out["sum"] = float(torch.ones(3).sum())

    with stoppable(lambda: True):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        with pytest.raises(Stopped):
            torch.ones(3).sum()
    assert out["sum"] == 3.0
    assert float(torch.ones(2).sum()) == 2.0  # and nothing is stopped once it is left
