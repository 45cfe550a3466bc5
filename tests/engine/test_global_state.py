"""No global state changes: not after a call, not after a call that raised (issue 9).

The op-level engine watches the forward pass (a torch function mode); outside a call nothing of
it may remain: the function-mode stack, global and per-module hooks, ``torch``,
``torch.nn.functional`` and ``torch.Tensor`` attributes, the ``forward`` of torch and
torchvision module classes, grad mode, parameters, buffers and training flags.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torch.nn.modules.module as module_globals
import torchvision
from engine_nets import assert_untouched, snapshot
from torch import Tensor, nn
from zoo_models import BOUNDS, build

import clrp_widgets as cw
from clrp_widgets.engine.errors import CLRPError
from clrp_widgets.engine.rules import ZPlus

GLOBAL_HOOKS = [n for n in dir(module_globals) if n.startswith("_global_")]


def module_classes() -> list[type]:
    """Every nn.Module subclass of torch.nn and torchvision.models / torchvision.ops."""
    found: set[type] = set()
    mods = [nn, torchvision.ops, torchvision.ops.misc, torchvision.models]
    mods += [m for _, m in inspect.getmembers(torchvision.models, inspect.ismodule)]
    for mod in mods:
        for _, obj in inspect.getmembers(mod, inspect.isclass):
            if issubclass(obj, nn.Module):
                found.add(obj)
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


CLASSES = module_classes()


def _copy(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value


def global_state() -> dict[str, Any]:
    return {
        "function mode stack": list(torch.overrides._get_current_function_mode_stack()),
        "function mode stack length": torch._C._len_torch_function_stack(),
        "function mode enabled": torch._C._is_torch_function_mode_enabled(),
        "torch function enabled": torch._C._is_torch_function_enabled(),
        "grad enabled": torch.is_grad_enabled(),
        "inference mode": torch.is_inference_mode_enabled(),
        "anomaly": torch.is_anomaly_enabled(),
        "default dtype": torch.get_default_dtype(),
        "global hooks": {n: _copy(getattr(module_globals, n)) for n in GLOBAL_HOOKS},
        "torch": dict(vars(torch)),
        "torch.nn.functional": dict(vars(F)),
        "torch.Tensor": dict(vars(torch.Tensor)),
        "torch._C.TensorBase": dict(vars(torch._C.TensorBase)),
        "forward": {c: (vars(c).get("forward"), vars(c).get("__call__")) for c in CLASSES},
        "Module": (nn.Module.__call__, nn.Module._call_impl, nn.Module.forward),
    }


def assert_same_globals(before: dict[str, Any]) -> None:
    after = global_state()
    for key, was in before.items():
        now = after[key]
        if isinstance(was, dict) and key in ("torch", "torch.nn.functional"):
            changed = [k for k, v in was.items() if now.get(k) is not v]
            added = [k for k in now.keys() - was.keys() if not inspect.ismodule(now[k])]
            assert not changed and not added, (key, changed, added)
        elif isinstance(was, dict) and key in ("torch.Tensor", "torch._C.TensorBase", "forward"):
            changed = [k for k, v in was.items() if now.get(k) is not v and now.get(k) != v]
            assert not changed and now.keys() == was.keys(), (key, changed)
        else:
            assert now == was, key


@dataclass
class Case:
    model: nn.Module
    x: Tensor
    target: int


#: float32 and the smallest input each takes: what is checked here (modes, hooks, patched
#: functions, the model) does not depend on them; exactness is test_zoo's (float64)
MODELS = {"efficientnet_b0": 16, "convnext_tiny": 32, "shufflenet_v2_x0_5": 16}


@pytest.fixture(scope="module", params=list(MODELS))
def case(request: pytest.FixtureRequest) -> Case:
    c = build(request.param, size=MODELS[request.param], dtype=torch.float32)
    return Case(c.model, c.x, c.target)


def entry_points(c: Case) -> dict[str, Callable[[], object]]:
    ex = cw.Explainer(c.model, input_bounds=BOUNDS)

    def op_layer() -> str:
        ex.explain(c.x, c.target, layers=None)
        return next(n for n in ex.layer_names if ":" in n)

    return {
        "explain clrp1 all layers": lambda: ex.explain(c.x, c.target, layers="all"),
        "explain clrp2": lambda: ex.explain(c.x, c.target, "clrp2", layers=None),
        "neuron at an op layer": lambda: ex.neuron(c.x, op_layer(), 0, layers=None),
        "conditional at an op layer": lambda: ex.conditional(c.x, c.target, op_layer(), [0, 1]),
        "predict": lambda: ex.predict(c.x),
        "guided backprop": lambda: ex.baseline(c.x, c.target, "guided_backprop"),
        "cw.lrp": lambda: cw.lrp(c.model, c.x, c.target, input_bounds=BOUNDS),
        "cw.clrp": lambda: cw.clrp(c.model, c.x, c.target, input_bounds=BOUNDS),
    }


@pytest.mark.parametrize(
    "entry",
    [
        "explain clrp1 all layers",
        "explain clrp2",
        "neuron at an op layer",
        "conditional at an op layer",
        "predict",
        "guided backprop",
        "cw.lrp",
        "cw.clrp",
    ],
)
def test_calls_leave_no_global_state(case: Case, entry: str) -> None:
    fn = entry_points(case)[entry]
    before, model_before = global_state(), snapshot(case.model)
    fn()
    assert_same_globals(before)
    assert_untouched(case.model, model_before)


# ----------------------------------------------------------------------------- after errors


class Abort(BaseException):
    """Not an Exception: like KeyboardInterrupt, it skips ``except Exception`` clean-ups."""


class Tripwire(nn.Module):
    """A small functional net that raises ``error`` in the middle of its forward pass."""

    def __init__(self, error: BaseException | None = None, unsupported: bool = False) -> None:
        super().__init__()
        self.error, self.unsupported = error, unsupported
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(4, 3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.conv1(x))
        h = h + F.relu(self.conv2(h))
        if self.error is not None:
            raise self.error
        if self.unsupported:
            h = torch.cumsum(h, dim=1)  # no relevance rule
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


def tripwire(**kwargs: Any) -> nn.Module:
    torch.manual_seed(0)
    return Tripwire(**kwargs).eval()


X = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))


class Exploding(ZPlus):
    """A Conv rule that fails in the backward pass."""

    def relevance(self, *args: Any, **kwargs: Any) -> Tensor:
        raise RuntimeError("boom in backward")


@pytest.mark.parametrize(
    ("make", "raises", "match"),
    [
        (lambda: tripwire(error=RuntimeError("boom in forward")), RuntimeError, "boom"),
        (lambda: tripwire(error=Abort("abort in forward")), Abort, "abort"),
        (lambda: tripwire(unsupported=True), CLRPError, "cumsum"),
    ],
    ids=["error-in-forward", "base-exception-in-forward", "unsupported-op"],
)
def test_nothing_left_after_an_error_in_the_forward_pass(make, raises, match) -> None:
    model = make()
    model.train()
    model.conv2.eval()  # mixed training flags must come back exactly
    before, model_before = global_state(), snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the training-mode warning
        with pytest.raises(raises, match=match):
            cw.Explainer(model, input_bounds=(0.0, 1.0)).explain(X, 0, layers="all")
    assert_same_globals(before)
    assert_untouched(model, model_before)


def test_nothing_left_after_an_error_in_the_backward_pass() -> None:
    model = tripwire()
    before, model_before = global_state(), snapshot(model)
    ex = cw.Explainer(model, input_bounds=(0.0, 1.0), overrides={"conv2": Exploding()})
    with pytest.raises(RuntimeError, match="boom in backward"):
        ex.explain(X, 0, layers="all")
    assert_same_globals(before)
    assert_untouched(model, model_before)
    # and the model explains normally afterwards
    assert cw.lrp(model, X, 0, input_bounds=(0.0, 1.0)).abs().sum() > 0


def test_nothing_left_after_bad_input() -> None:
    model = tripwire()
    before = global_state()
    with pytest.raises(CLRPError):
        cw.lrp(model, X.double(), 0, input_bounds=(0.0, 1.0))
    assert_same_globals(before)


class CountingMode(torch.overrides.TorchFunctionMode):
    """A user's own function mode, active around the engine call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        self.calls += 1
        return func(*args, **(kwargs or {}))


def test_a_users_own_function_mode_stays_on_the_stack() -> None:
    model = tripwire()
    want = cw.lrp(model, X, 0, input_bounds=(0.0, 1.0))
    with CountingMode() as mode:
        stack = list(torch.overrides._get_current_function_mode_stack())
        got = cw.lrp(model, X, 0, input_bounds=(0.0, 1.0))
        assert list(torch.overrides._get_current_function_mode_stack()) == stack
    assert mode.calls > 0  # the user's mode still saw the model's operations
    torch.testing.assert_close(got, want)
    assert torch.overrides._get_current_function_mode_stack() == []
