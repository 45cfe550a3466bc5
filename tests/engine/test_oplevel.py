"""Op-level rules (issue 9) on small nets, against hand-computed values and equal module nets.

In-place patterns, never-called modules, op-level layer names in results, the conservation
guard and the input/mode errors. The gate and add rules' hand-computed examples live in
``test_op_rules.py``; here the in-place and functional forms are compared with them.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from engine_nets import assert_untouched, snapshot
from torch import Tensor, nn

import clrp_widgets as cw
from clrp_widgets.engine import ConservationWarning, Pass, RelevanceEngine
from clrp_widgets.engine.errors import ConfigError, InputError

B = (-1.0, 1.0)


class Block(nn.Module):
    """conv-relu-conv-relu plus skip, the sum written in one of several ways, then a ReLU.

    Both addends are non-negative, so z+ is exactly conservative (no negative pre-activation
    that z+ could not pass on)."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.conv2(F.relu(self.conv1(x))))
        if self.how == "plain":
            return F.relu(out + x)
        if self.how == "iadd":
            out += x
        elif self.how == "add_ignoring_result":
            out.add_(x)
        elif self.how == "torch_add_alpha":
            out = torch.add(out, x, alpha=1)
        if self.how == "relu_ignoring_result":
            out = out + x
            F.relu(out, inplace=True)
            return out
        torch.relu_(out)
        return out


class Net(nn.Module):
    def __init__(self, how: str, gate: str = "none") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.block = Block(how)
        self.gate_conv = nn.Conv2d(4, 4, 1, bias=False)
        self.gate = gate
        self.fc = nn.Linear(4, 5, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.block(F.relu(self.stem(x)))
        if self.gate == "mul_":
            h.mul_(torch.sigmoid(self.gate_conv(F.adaptive_avg_pool2d(h, 1))))
        elif self.gate == "mul":
            h = h * torch.sigmoid(self.gate_conv(F.adaptive_avg_pool2d(h, 1)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def maps(model: nn.Module, x: Tensor, capture=None):
    engine = RelevanceEngine(model.eval(), input_bounds=B)
    return engine, engine.run(x, 2, "clrp1", kinds=("target", "dual", "contrast"), capture=capture)


X = torch.rand(2, 3, 8, 8) * 2 - 1

HOWS = ["iadd", "add_ignoring_result", "torch_add_alpha", "relu_ignoring_result"]


@pytest.mark.parametrize("how", HOWS)
def test_in_place_sums_equal_the_out_of_place_sum(how):
    want = maps(Net("plain"), X)[1]
    model = Net(how).eval()
    before = snapshot(model)
    got = maps(model, X)[1]
    assert_untouched(model, before)
    torch.testing.assert_close(got.logits, want.logits)
    torch.testing.assert_close(got.input, want.input, rtol=1e-5, atol=1e-7)


def test_in_place_gate_equals_the_out_of_place_gate():
    want = maps(Net("plain", gate="mul"), X)[1]
    got = maps(Net("plain", gate="mul_"), X)[1]
    torch.testing.assert_close(got.input, want.input, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("gate", ["none", "mul", "mul_"])
def test_lrp_is_conservative_through_sums_gates_and_functional_pooling(gate):
    model = Net("iadd", gate=gate).double()
    out = RelevanceEngine(model.eval(), input_bounds=B).run(X.double(), 2, "lrp")
    torch.testing.assert_close(out.input.sum((2, 3, 4)), out.seed_sums, rtol=1e-6, atol=1e-12)


def test_op_layers_are_named_captured_and_in_forward_order():
    engine, out = maps(Net("plain", gate="mul"), X, capture="all")
    names = engine.layer_names()
    assert names == [
        "stem",
        "block.conv1",
        "block.conv2",
        "block:add",
        ":adaptive_avg_pool2d",
        "gate_conv",
        ":mul",
        ":adaptive_avg_pool2d.1",
        "fc",
    ]
    assert list(out.layers) == names
    # the sum of the contrast relevance at the add equals the whole contrast (one path)
    at_add = out.layers["block:add"].relevance.sum((2, 3, 4))
    torch.testing.assert_close(at_add, out.seed_sums, rtol=1e-4, atol=1e-6)
    act = out.layers["block:add"].activation
    with torch.no_grad():
        stem = F.relu(engine.model.stem(X))
        block = engine.model.block
        want = F.relu(block.conv2(F.relu(block.conv1(stem)))) + stem
    torch.testing.assert_close(act, want)


def test_op_layers_in_explainer_tree_conditional_and_neuron():
    ex = cw.Explainer(Net("iadd").eval(), input_bounds=B)
    tree = ex.explain(X, 2)
    assert "block:add" in ex.layer_names
    node = tree["layers/block:add"]
    assert node["relevance"].dims == ("kind", "sample", "channel", "y", "x")
    cond = ex.conditional(X, 2, "block:add", [0, 1, 2, 3])
    total = tree["input"]["heatmap"].sel(kind="contrast")
    torch.testing.assert_close(
        torch.as_tensor(cond.sum("channel").values),
        torch.as_tensor(total.values),
        rtol=1e-4,
        atol=1e-6,
    )
    neuron = ex.neuron(X, "block:add", 1)
    assert "block:add" in neuron["layers"].children


def test_second_call_of_an_op_in_one_module_gets_an_index():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 3, bias=False)
            self.b = nn.Linear(3, 3, bias=False)
            self.c = nn.Linear(3, 2, bias=False)

        def forward(self, x):
            h = self.a(x) + self.b(x)
            return self.c(h + self.a(x))

    engine = RelevanceEngine(Twice().eval(), input_bounds=B)
    engine.run(torch.rand(2, 3), 0, "lrp")
    assert [n for n in engine.layer_names() if ":" in n] == [":add", ":add.1"]


class WithUnusedParts(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.placeholder = nn.Sequential()  # shufflenet's empty branch
        self.aux = nn.Sequential(nn.Conv2d(4, 4, 1), nn.GELU(), nn.Linear(4, 3))  # never called
        self.fc = nn.Linear(4, 3, bias=False)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(self.conv(x)), 1), 1))


def test_never_called_modules_are_not_refused_and_not_listed():
    ex = cw.Explainer(WithUnusedParts().eval(), input_bounds=B)
    tree = ex.explain(X, 1, layers="all")
    assert ex.layer_names == ["conv", ":adaptive_avg_pool2d", "fc"]
    assert set(tree["layers"].children) == set(ex.layer_names)


def test_torchvision_googlenet_aux_heads_and_shufflenet_placeholders():
    torch.manual_seed(0)
    for model in (
        torchvision.models.googlenet(num_classes=4, aux_logits=True, init_weights=False),
        torchvision.models.shufflenet_v2_x0_5(num_classes=4),
    ):
        ex = cw.Explainer(model.eval(), input_bounds=B)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConservationWarning)  # z+ on depthwise convs
            tree = ex.explain(torch.rand(1, 3, 64, 64) * 2 - 1, 1, layers="all")
        assert not any("aux" in n for n in tree["layers"].children)


def test_stochastic_depth_layer_norm_and_permute_of_convnext_pass():
    torch.manual_seed(0)
    model = torchvision.models.convnext_tiny(num_classes=4).double().eval()
    out = RelevanceEngine(model, input_bounds=B).run(
        torch.rand(1, 3, 32, 32, dtype=torch.float64) * 2 - 1, 1, "lrp"
    )
    assert bool(out.input.isfinite().all())


def leaky_net() -> nn.Module:
    """x -> identity (z^B) -> unit with zero weights and bias 1, no ReLU -> logits.

    The hidden unit h = 1 comes from its bias alone: no contribution of its input at all (z+ and
    z- both 0), so the paper rules (bias ignored) cannot pass the relevance the logit layer gives
    it (R_h = logit 0 = -h).
    """
    model = nn.Sequential(
        nn.Linear(2, 2, bias=False), nn.Linear(2, 1), nn.Linear(1, 2, bias=False)
    ).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[1].weight.fill_(0.0)
        model[1].bias.fill_(1.0)
        model[2].weight.copy_(torch.tensor([[-1.0], [1.0]]))
    return model.eval()


def test_conservation_guard_names_the_leaking_layer():
    x = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    with pytest.warns(ConservationWarning, match="at layer '1'"):
        RelevanceEngine(leaky_net(), input_bounds=(0.0, 1.0)).run(x, 0, "lrp")
    assert cw.ConservationWarning is ConservationWarning


def test_conservation_guard_is_silent_on_conservative_maps():
    model = Net("iadd", gate="mul").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConservationWarning)
        engine = RelevanceEngine(model, input_bounds=B)
        engine.run(X, 2, "clrp1", kinds=("target", "dual", "contrast"))
        engine.run(X, 2, "lrp")
        engine.neuron(X, "block:add", 0)


def test_non_conservative_presets_are_not_guarded():
    x = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConservationWarning)
        RelevanceEngine(leaky_net(), rules="epsilon_plus").run(x, 0, "lrp")


def test_overrides_extend_the_preset():
    model = Net("plain").eval()
    plain = RelevanceEngine(model, input_bounds=B).run(X, 2, "lrp")
    # the add's proportional split replaced by all relevance to the first addend (Gate: 1 const)
    from clrp_widgets.engine import Gate

    engine = RelevanceEngine(model, input_bounds=B, overrides={"block:add": Gate(gate=1)})
    other = engine.run(X, 2, "lrp")
    assert not torch.allclose(plain.input, other.input)
    assert bool(other.input.isfinite().all())
    with pytest.raises(ConfigError, match="never made"):
        RelevanceEngine(model, input_bounds=B, overrides={"block:mul": Pass()}).run(X, 2)


def test_dtype_device_and_inference_mode_errors():
    model = Net("plain").eval()
    engine = RelevanceEngine(model, input_bounds=B)
    with pytest.raises(InputError, match=r"x.to\(torch.float32\)"):
        engine.run(X.double(), 1)
    with torch.inference_mode(), pytest.raises(ConfigError, match="inference_mode"):
        engine.run(X, 1)
    with torch.inference_mode():
        x_inf = X.clone()
    assert engine.run(x_inf, 1).input.isfinite().all()  # an inference-mode tensor is copied


def test_compiled_model_is_explained_eagerly():
    model = Net("plain").eval()
    want = RelevanceEngine(model, input_bounds=B).run(X, 1)
    engine = RelevanceEngine(torch.compile(model), input_bounds=B)
    assert engine.model is model
    torch.testing.assert_close(engine.run(X, 1).input, want.input)
