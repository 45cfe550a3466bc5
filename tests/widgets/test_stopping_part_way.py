"""Stopping a computation part-way (a newer request) never leaves a wrong map behind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_explorer import NAMES, TinyNet

import clrp_widgets as cw
from clrp_widgets.widgets.session import ExplainSession, Stopped, View, stoppable


def counting_stop(after: int):
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > after

    return stop


@pytest.mark.parametrize("after", [0, 3, 17, 60, 150])
def test_a_stop_at_any_operation_leaves_the_next_results_exact(after):
    torch.manual_seed(3)
    model = TinyNet().eval()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    fresh = cw.Explainer(model, input_bounds=(0.0, 1.0), class_names=NAMES)
    want_tree = fresh.explain(x, 2, contrast="clrp1", layers=["features.3"])
    want_cond = fresh.conditional(x, 2, "features.3", [1, 5, 7]).values[:, 0]
    weights = [p.clone() for p in model.parameters()]

    session = ExplainSession(
        lambda rules: cw.Explainer(model, rules=rules, input_bounds=(0.0, 1.0)), [x]
    )
    view = View(target=2, contrast="clrp1", class_b=0, rules="paper", layer="features.3")
    stopped = False
    try:
        with stoppable(counting_stop(after)):
            session.decision_map(view)
            session.layer(view)
            session.conditional(view, [1, 5, 7])
    except Stopped:
        stopped = True
    assert stopped or after >= 150
    got = session.tree(view)["input"]["heatmap"].values
    np.testing.assert_array_equal(got, want_tree["input"]["heatmap"].values)
    cond = session.conditional(view, [1, 5, 7])
    np.testing.assert_allclose(np.stack([cond[c] for c in (1, 5, 7)]), want_cond, rtol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())
