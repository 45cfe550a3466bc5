"""Every refusal's advice runs on the model that raised it (issue 20, items 2 and 7).

The engine probes a refused call on its own operands and suggests ``Pass()`` only for an
element-wise op, ``Norm()`` for a linear one, ``ProductRule()`` for a product of two signals and
``Gradient()`` otherwise. Each case below is refused, its ``err.fix`` is the suggestion, and the
model explained with ``overrides=err.fix`` gives finite maps (conserved where the rule is).
Refusals raised inside Python operators (``a * b``, ``a ** b``, ``a @ b``, in-place forms) reach
the user as the engine's error, never as torch's bare ``TypeError``.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor, nn

import clrp_widgets as cw
from clrp_widgets.engine import Gate, Gradient, Norm, Pass, ProductRule
from clrp_widgets.engine.errors import ConservationWarning, UnsupportedLayerError

B = (-1.0, 1.0)


class Net(nn.Module):
    """conv -> relu -> ``op`` -> global pool -> linear, float64."""

    def __init__(self, op, channels: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.op = op
        self.fc = nn.Linear(channels, 3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.op(torch.relu(self.conv(x)))
        return self.fc(h.mean((2, 3)))


class Fn(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, h: Tensor) -> Tensor:
        return self.fn(h)


def power_gate(h: Tensor) -> Tensor:
    return h ** torch.sigmoid(h)  # Tensor.__pow__ with two signals


def inplace_power(h: Tensor) -> Tensor:
    h = h + 1
    h **= torch.sigmoid(h)  # the in-place operator
    return h


def matmul_self(h: Tensor) -> Tensor:
    flat = h.flatten(2)  # (N, C, HW)
    return (flat @ flat.transpose(1, 2) @ flat).view_as(h)  # a product of three signals


def vecdot(h: Tensor) -> Tensor:
    return torch.linalg.vecdot(h, h.flip(1), dim=1)[:, None].expand_as(h)  # bilinear


CASES = {
    # name: (function, the rule the advice must name, conserving?)
    "erf": (torch.erf, Pass, False),
    "cumsum": (lambda h: torch.cumsum(h, dim=1), Norm, True),
    "flip_cumsum": (lambda h: torch.cumsum(h.flip(2), dim=2), Norm, True),
    "cummax": (lambda h: torch.cummax(h, dim=1).values, Gradient, True),  # (values, indices)
    "logsumexp": (lambda h: h - torch.logsumexp(h, 1, keepdim=True), Gradient, False),
    "hypot": (lambda h: torch.hypot(h, h.flip(1)), Gate, False),
    "power_gate": (power_gate, Gate, False),
    "inplace_power": (inplace_power, Gate, False),
    "lerp": (lambda h: torch.lerp(h, h.flip(1), 0.3), Norm, True),
    "vecdot": (vecdot, ProductRule, True),
}


def refused(fn) -> tuple[nn.Module, Tensor, UnsupportedLayerError]:
    torch.manual_seed(0)
    model = Net(Fn(fn)).double().eval()
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64) * 2 - 1
    with pytest.raises(UnsupportedLayerError) as err:
        cw.Explainer(model, input_bounds=B).explain(x, 0)
    return model, x, err.value


@pytest.mark.parametrize("case", list(CASES))
def test_the_refusal_names_a_rule_that_runs(case):
    fn, rule, conserving = CASES[case]
    model, x, err = refused(fn)
    assert err.fix is not None and len(err.fix) == 1, str(err)
    ((key, suggested),) = err.fix.items()
    assert isinstance(suggested, rule), str(err)
    written = "Gate(gate=1)" if rule is Gate else f"{rule.__name__}()"
    assert f"overrides={{{key!r}: {written}}}" in str(err)
    assert "'op'" in str(err)  # the module that called it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tree = cw.Explainer(model, input_bounds=B, overrides=err.fix).explain(x, 0, "clrp1")
    heat = torch.as_tensor(tree["input"]["relevance"].values)
    assert torch.isfinite(heat).all() and heat.abs().max() > 0
    lost = [w for w in caught if issubclass(w.category, ConservationWarning)]
    if conserving:
        assert lost == [], [str(w.message) for w in lost]
        logit = float(tree["logits"].values[0, 0])
        lrp = float(tree["input"]["relevance"].sel(kind="target").sum())
        assert lrp == pytest.approx(logit, rel=1e-5)  # z+'s stabiliser: ~1e-6 here


def test_pass_is_never_advised_for_a_shape_changing_or_multi_input_op():
    for fn in (lambda h: torch.cumsum(h, 1), CASES["logsumexp"][0], power_gate):
        _, _, err = refused(fn)
        assert not isinstance(next(iter(err.fix.values())), Pass), str(err)


@pytest.mark.parametrize("case", ["power_gate", "inplace_power"])
def test_refusals_inside_python_operators_keep_their_message(case):
    """torch turns a TypeError raised inside ``__pow__``/``__ipow__`` into NotImplemented (then
    Python tries ``__rpow__`` or the out-of-place form); the engine re-raises the first
    refusal, the one of the user's own operator."""
    _, _, err = refused(CASES[case][0])
    assert type(err) is UnsupportedLayerError
    assert "no relevance rule for operation 'pow'" in str(err)
    assert "unsupported operand" not in str(err)
    assert "'op:pow'" in str(err)  # its first call, not the fallback's 'op:pow.1'


def test_a_selection_returning_values_and_indices_is_routed():
    """sort/topk/min are selections: the gradient routes relevance exactly (conservative)."""
    torch.manual_seed(0)
    model = Net(Fn(lambda h: torch.sort(h, dim=1).values)).double().eval()
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64) * 2 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConservationWarning)
        tree = cw.Explainer(model, input_bounds=B).explain(x, 0)
    logit = float(tree["logits"].values[0, 0])
    lrp = float(tree["input"]["relevance"].sel(kind="target").sum())
    assert lrp == pytest.approx(logit, rel=1e-5)


def test_an_unknown_op_inside_a_leaf_module_is_refused_with_advice_that_runs():
    class Swish(nn.Module):  # a module leaf the presets do not know, wrapping a probed op
        def forward(self, h: Tensor) -> Tensor:
            return torch.special.expit(h) * h

    torch.manual_seed(0)
    model = Net(Swish()).double().eval()
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64) * 2 - 1
    with pytest.raises(UnsupportedLayerError, match="'op:special_expit'") as err:
        cw.Explainer(model, input_bounds=B).explain(x, 0, "clrp1")
    assert isinstance(err.value.fix["op:special_expit"], Pass)
    tree = cw.Explainer(model, input_bounds=B, overrides=err.value.fix).explain(x, 0, "clrp1")
    assert torch.isfinite(torch.as_tensor(tree["input"]["relevance"].values)).all()
