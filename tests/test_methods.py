"""One method registry (issue 21): engine, metrics, data-set jobs and Explorer use its lists,
and every method it names runs where it is offered."""

from __future__ import annotations

import subprocess
import sys

import torch

import clrp_widgets as cw
from clrp_widgets import methods
from clrp_widgets.engine import baselines, seeds
from clrp_widgets.metrics import names
from clrp_widgets.scale import run
from clrp_widgets.widgets import labels, session


def test_every_part_reads_the_registry():
    assert seeds.CONTRASTS == run.CONTRASTS == names.RELEVANCE_METHODS == methods.CONTRASTS
    assert baselines.BASELINES == session.BASELINES == names.BASELINE_METHODS == methods.BASELINES
    assert session.LRP_CONTRASTS == (*methods.CONTRASTS, "pairwise")
    assert [v for _, v in labels.CONTRASTS] == [m.name for m in methods.REGISTRY]
    assert set(names.DEFAULT_METHODS) <= set(names.METHODS)


def test_every_registered_method_runs_in_the_explainer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1, bias=False),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3, bias=False),
    ).eval()
    ex = cw.Explainer(model, input_bounds=(0.0, 1.0))
    x = torch.rand(1, 3, 8, 8)
    for m in methods.REGISTRY:
        if m.kind == "baseline":
            heat = ex.baseline(x, 0, m.name)
        else:
            heat = ex.explain(x, 0, contrast=1 if m.needs_class_b else m.name)["input"]["heatmap"]
        assert heat.size > 0, m.name


def test_the_registry_imports_no_torch():
    code = "import sys, clrp_widgets.methods; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
