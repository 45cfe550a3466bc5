"""Every bad input of issue 2, Part 5, gets a clear error of the project's family."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
from engine_nets import assert_untouched, make_cnn, make_input, snapshot
from torch import nn

import clrp_widgets as cw
from clrp_widgets.engine import Pass, RelevanceEngine, ZPlus
from clrp_widgets.engine.errors import (
    CLRPError,
    ConfigError,
    InputError,
    LayerNotFoundError,
    UnsupportedLayerError,
)

B = (0.0, 1.0)


def named_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 4, 3, padding=1),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(4, 4, 3, padding=1),
            relu2=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(4, 3),
        )
    ).eval()


@pytest.fixture
def model():
    return make_cnn()


@pytest.fixture
def engine(model):
    return RelevanceEngine(model, input_bounds=B)


def raises(exc, *words):
    """pytest.raises that also checks the message names the problem and the fix."""

    class Check:
        def __enter__(self):
            self.ctx = pytest.raises(exc)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *args):
            out = self.ctx.__exit__(*args)
            message = str(self.info.value).lower()
            for word in words:
                assert word.lower() in message, (word, message)
            assert isinstance(self.info.value, CLRPError)
            return out

    return Check()


@pytest.mark.parametrize(
    ("x", "words"),
    [
        (torch.rand(3, 16, 16), ["rank", "unsqueeze(0)"]),
        (torch.rand(1, 1, 3, 16, 16), ["rank"]),
        (torch.rand(1, 1, 16, 16), ["1 channels", "expects 3"]),
        ((torch.rand(1, 3, 16, 16) * 255).to(torch.uint8), ["dtype", "float"]),
        (torch.ones(1, 3, 16, 16).long(), ["dtype"]),
        (torch.full((1, 3, 16, 16), float("nan")), ["nan", "nan_to_num"]),
        (torch.full((1, 3, 16, 16), float("inf")), ["inf"]),
        (torch.rand(0, 3, 16, 16), ["empty"]),
        ([[1.0]], ["torch.tensor"]),
    ],
    ids=["rank3", "rank5", "channels", "uint8", "int64", "nan", "inf", "empty", "list"],
)
def test_bad_input_tensor(model, engine, x, words):
    before = snapshot(model)
    with raises(InputError, *words):
        engine.run(x, 0)
    assert_untouched(model, before)


@pytest.mark.parametrize(
    ("target", "words"),
    [
        (6, ["out of range", "0..5"]),
        (-1, ["out of range"]),
        ([0, 1, 2], ["3 targets", "2 samples"]),
        ([1], ["1 targets"]),
        (1.5, ["int"]),
        (torch.tensor([0.0, 1.0]), ["argmax"]),
        (True, ["bool"]),
    ],
)
def test_bad_target(model, engine, x, target, words):
    before = snapshot(model)
    with raises(InputError, *words):
        engine.run(x, target)
    assert_untouched(model, before)


def test_targets_accept_ints_sequences_and_tensors(engine, x):
    base = engine.run(x, [2, 2]).input
    for target in (2, (2, 2), torch.tensor([2, 2]), torch.tensor(2)):
        torch.testing.assert_close(engine.run(x, target).input, base)


def test_unknown_preset_suggests_closest(model):
    with raises(ConfigError, "'papr'", "did you mean 'paper'"):
        RelevanceEngine(model, rules="papr")
    with raises(ConfigError, "not a rule"):
        RelevanceEngine(model, rules={nn.Conv2d: "zplus"})


@pytest.mark.parametrize("variant", ["clrp3", "CLRP-1", 1.0, None])
def test_unknown_variant_or_contrast(model, x, variant):
    with raises(ConfigError, "contrast"):
        cw.clrp(model, x, 0, variant=variant, input_bounds=B)


def test_pairwise_class_checks(engine, x):
    with raises(InputError, "out of range"):
        engine.run(x, 0, contrast=6)
    with raises(InputError, "equals the target"):
        engine.run(x, [0, 1], contrast=1)


def test_kinds_and_dual_seed_checks(engine, x):
    with raises(ConfigError, "only the 'target' map"):
        engine.run(x, 0, contrast="lrp", kinds=("contrast",))
    with raises(ConfigError, "subset"):
        engine.run(x, 0, kinds=("target", "delta"))
    with raises(ConfigError, "clrp1"):
        engine.run(x, 0, contrast="clrp2", dual_seed="logits")
    with raises(ConfigError, "uniform"):
        engine.run(x, 0, dual_seed="softmax")


@pytest.mark.parametrize(
    "bounds", [(1.0, 0.0), (0.5, 0.5), (torch.tensor([0.0, 1.0, 0.0]), torch.ones(3))]
)
def test_input_bounds_low_not_below_high(model, bounds):
    with raises(InputError, "low < high"):
        RelevanceEngine(model, input_bounds=bounds)


def test_input_bounds_must_be_a_pair(model):
    with raises(ConfigError, "pair"):
        RelevanceEngine(model, input_bounds=1.0)


def test_default_bounds_warn_about_input_outside_them(model):
    x = torch.full((1, 3, 16, 16), 3.0)
    with pytest.warns(UserWarning, match=r"input_bounds=\(low, high\)"):
        outside = cw.lrp(model, x, 0)
    # computed with the default bounds all the same, as an explicit call with them would be
    explicit = cw.lrp(model, x, 0, input_bounds=(-2.1179, 2.64))
    torch.testing.assert_close(outside, explicit, rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cw.lrp(model, make_input(1), 0).shape == (1, 3, 16, 16)


class Erf(nn.Module):
    def forward(self, x):
        return torch.erf(x) * 2  # erf has no relevance rule; the product with 2 passes


def test_unsupported_op_names_op_path_and_advice_that_works():
    model = nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(3, 4, 3),
            block=nn.Sequential(OrderedDict(act=Erf())),
            flat=nn.Flatten(),
            fc=nn.LazyLinear(2),
        )
    )
    model(torch.rand(1, 3, 6, 6))
    model.eval()
    x = torch.rand(1, 3, 6, 6)
    engine = RelevanceEngine(model, input_bounds=B)  # refused when the op is met, not before
    words = ("'erf'", "'block.act'", "overrides={'block.act:erf': Pass()}", "torch.erf")
    with raises(UnsupportedLayerError, *words):
        engine.run(x, 1, "lrp")
    for overrides in ({"block.act:erf": Pass()}, {torch.erf: Pass()}):
        out = RelevanceEngine(model, input_bounds=B, overrides=overrides).run(x, 1, "lrp")
        torch.testing.assert_close(out.input.sum(), out.seed_sums.sum())
    with raises(UnsupportedLayerError, "'erf'"):  # a rules mapping still replaces the preset
        rules = {nn.Conv2d: ZPlus(), nn.Linear: ZPlus()}
        RelevanceEngine(model, rules=rules).run(x, 1, "lrp")


def test_custom_mapping_without_linear_rule_is_unsupported():
    with raises(UnsupportedLayerError, "'fc'", "Linear"):
        RelevanceEngine(named_cnn(), rules={nn.Conv2d: ZPlus()})


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes_are_explained_as_pad_then_convolution(mode):
    """A conv with padding_mode != "zeros" is its own F.pad + F.conv2d: the same maps as that
    twin written out, the layer keeps its module name, and relevance is conserved."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode=mode, bias=False)
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3, bias=False))
    plain = nn.Conv2d(3, 4, 3, padding=0, bias=False)
    plain.weight.data.copy_(conv.weight.data)
    twin = nn.Sequential(PadThen(plain, mode), *list(model)[1:]).double().eval()
    model = model.double().eval()
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    for rules, contrast in [("paper", "lrp"), ("paper", "clrp1"), ("epsilon", "clrp1")]:
        want = RelevanceEngine(twin, input_bounds=B, rules=rules).run(x, 1, contrast)
        got = RelevanceEngine(model, input_bounds=B, rules=rules).run(x, 1, contrast)
        torch.testing.assert_close(got.input, want.input, rtol=0, atol=1e-12)
    tree = cw.Explainer(model, input_bounds=B).explain(x, 1, "lrp", layers="all")
    assert "0" in tree["layers"].children
    total = float(tree["input"]["relevance"].sum())
    assert total == pytest.approx(float(tree["logits"].values[:, 1].sum()), rel=1e-6)


class PadThen(nn.Module):
    """F.pad(x, 1, mode) then a convolution without padding."""

    def __init__(self, conv: nn.Module, mode: str) -> None:
        super().__init__()
        self.conv, self.mode = conv, mode

    def forward(self, x):
        return self.conv(torch.nn.functional.pad(x, (1, 1, 1, 1), mode=self.mode))


def test_layer_not_found_suggests_closest_names():
    engine = RelevanceEngine(named_cnn(), input_bounds=B)
    x = make_input(1)
    with raises(LayerNotFoundError, "'conv_2'", "'conv2'"):
        engine.run(x, 0, capture=["conv_2"])
    with raises(LayerNotFoundError, "'conv3'"):
        engine.neuron(x, "conv3", 0)
    with raises(LayerNotFoundError, "'fc2'", "'fc'"):
        engine.conditional(x, 0, "fc2", [0])
    with raises(LayerNotFoundError, "'conv'"):
        RelevanceEngine(named_cnn(), rules={"conv": ZPlus(), nn.Module: ZPlus()})
    assert isinstance(LayerNotFoundError("m"), KeyError)


def test_channel_out_of_range():
    engine = RelevanceEngine(named_cnn(), input_bounds=B)
    x = make_input(1)
    with raises(InputError, "channel 4", "0..3"):
        engine.neuron(x, "conv2", 4)
    with raises(InputError, "channel -1"):
        engine.conditional(x, 0, "conv1", [0, -1])
    with raises(InputError, "channel 7"):
        engine.neuron(x, "conv2", 0, contrast=7)
    with raises(InputError, "differ"):
        engine.neuron(x, "conv2", 1, contrast=1)


def test_model_must_return_logits():
    model = nn.Sequential(nn.Conv2d(3, 2, 3)).eval()
    with raises(ConfigError, "(n, classes)"):
        RelevanceEngine(model, input_bounds=B).run(make_input(1), 0)


class ScaledOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = make_cnn()

    def forward(self, x):
        return self.body(x) * 2.0


def test_clrp2_needs_a_logit_layer():
    with raises(ConfigError, "clrp2", "clrp1"):
        cw.clrp(ScaledOutput().eval(), make_input(1), 0, variant="clrp2", input_bounds=B)


def test_error_classes_subclass_builtin_ones():
    assert issubclass(InputError, ValueError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(UnsupportedLayerError, TypeError)
