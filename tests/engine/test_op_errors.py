"""Clear errors and warnings of the op-level engine (issue 9): never a raw error, never silent."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from engine_nets import make_cnn, make_input
from torch import Tensor, nn
from zoo_models import BOUNDS, build, construct, zoo_input

import clrp_widgets as cw
from clrp_widgets.engine import Epsilon, Pass, RelevanceEngine
from clrp_widgets.engine.errors import ConfigError, InputError, UnsupportedLayerError

B = (0.0, 1.0)


# ----------------------------------------------------------------------------- input and mode


def test_float64_input_into_a_float32_model_names_both_dtypes():
    with pytest.raises(InputError, match="float64") as err:
        cw.lrp(make_cnn(), make_input().double(), 0, input_bounds=B)
    assert "float32" in str(err.value)


def test_input_on_another_device_than_the_model_is_named():
    model = make_cnn().to("meta")
    with pytest.raises(InputError, match="meta") as err:
        cw.lrp(model, make_input(), 0, input_bounds=B)
    assert "meta" in str(err.value) and "cpu" in str(err.value)


def test_inference_mode_callers_get_a_clear_error():
    model, x = make_cnn(), make_input()
    with torch.inference_mode(), pytest.raises(ConfigError, match="inference_mode"):
        cw.clrp(model, x, 0, input_bounds=B)
    with torch.inference_mode(), pytest.raises(ConfigError, match="inference_mode"):
        cw.Explainer(model, input_bounds=B).explain(x, 0)


def test_no_grad_callers_still_get_maps():
    model, x = make_cnn(), make_input()
    want = cw.clrp(model, x, 1, input_bounds=B)
    with torch.no_grad():
        got = cw.clrp(model, x, 1, input_bounds=B)
    torch.testing.assert_close(got, want)


def test_a_compiled_model_is_explained_as_its_original():
    """``torch.compile`` wraps the model (``_orig_mod``); the engine explains the original."""
    model, x = make_cnn(), make_input()
    compiled = torch.compile(model)
    assert compiled._orig_mod is model
    want = cw.clrp(model, x, 2, input_bounds=B)
    torch.testing.assert_close(cw.clrp(compiled, x, 2, input_bounds=B), want)
    tree = cw.Explainer(compiled, input_bounds=B).explain(x, 2, layers="all")
    assert "3" in tree["layers"].children  # the original's module names, no "_orig_mod." prefix


# ----------------------------------------------------------------------------- unsupported ops


class Mixer(nn.Module):
    def forward(self, h: Tensor) -> Tensor:
        return torch.cumsum(h, dim=1)  # no relevance rule for a cumulative sum


class WithCumsum(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.body = nn.Sequential(OrderedDict(relu=nn.ReLU(), mix=Mixer()))
        self.fc = nn.Linear(4, 3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.body(self.conv(x))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


def test_an_op_without_a_rule_names_the_op_and_the_module_path():
    torch.manual_seed(0)
    model = WithCumsum().eval()
    with pytest.raises(UnsupportedLayerError) as err:
        cw.Explainer(model, input_bounds=B).explain(make_input(1), 0)
    message = str(err.value)
    assert "cumsum" in message and "body.mix" in message
    assert "overrides" in message  # the advice: extend the preset
    assert "torch.nn.StochasticDepth" not in message


@pytest.mark.parametrize("key", ["body.mix:cumsum", "torch.cumsum"])
def test_following_the_advice_extends_the_preset(key):
    """An override for the op makes the model explainable; the preset's rules stay in force."""
    torch.manual_seed(0)
    model, x = WithCumsum().eval(), make_input(1)
    override = {torch.cumsum if key == "torch.cumsum" else key: Pass()}
    ex = cw.Explainer(model, rules="paper", input_bounds=B, overrides=override)
    tree = ex.explain(x, 0, layers="all")
    assert torch.isfinite(torch.as_tensor(tree["input"]["relevance"].values)).all()
    # the preset still applies elsewhere: z+ on fc gives the same relevance at its input as a
    # paper engine on the model's head alone would (the logit layer is untouched by the override)
    logit = float(tree["logits"].values[0, 0])
    assert float(tree["layers"]["fc"]["relevance"].sel(kind="target").sum()) == pytest.approx(
        logit, rel=1e-5
    )


def test_stochastic_depth_and_placeholders_need_no_advice_any_more():
    """EfficientNet's StochasticDepth and ShuffleNet's empty Sequential placeholders."""
    for name in ("efficientnet_b0", "shufflenet_v2_x0_5"):
        case = build(name, size=32)
        tree = cw.Explainer(case.model, input_bounds=BOUNDS).explain(
            case.x, case.target, layers="all"
        )
        assert len(tree["layers"].children) > 0, name


def test_overrides_extend_and_rules_mappings_still_replace():
    model, x = make_cnn(), make_input()
    paper = cw.Explainer(model, input_bounds=B).explain(x, 1, layers="all")
    ex = cw.Explainer(model, input_bounds=B, overrides={"3": Epsilon(0.25)})
    got = ex.explain(x, 1, layers="all")
    # above the overridden layer nothing changes; below it the maps do
    for layer in ("8", "11"):
        torch.testing.assert_close(
            torch.as_tensor(got["layers"][layer]["relevance"].values),
            torch.as_tensor(paper["layers"][layer]["relevance"].values),
        )
    assert not torch.allclose(
        torch.as_tensor(got["input"]["relevance"].values),
        torch.as_tensor(paper["input"]["relevance"].values),
    )
    with pytest.raises(cw.CLRPError, match=r"no\.such\.layer"):  # at construction or first call
        cw.Explainer(model, input_bounds=B, overrides={"no.such.layer": Pass()}).explain(x, 1)


# ----------------------------------------------------------------------------- never-called modules


def test_aux_heads_never_called_in_eval_do_not_break_layers_all():
    torch.manual_seed(0)
    for name, size in (("googlenet", 32), ("inception_v3", 75)):
        model = construct(name, aux_logits=True).double()
        x = zoo_input(size)
        with torch.no_grad():
            target = int(model(x)[0].argmax())
        ex = cw.Explainer(model, input_bounds=BOUNDS)
        tree = ex.explain(x, target, layers="all")
        captured = list(tree["layers"].children)
        assert captured and not any(n.startswith(("aux1", "aux2", "AuxLogits")) for n in captured)
        assert all(n in ex.layer_names for n in captured), name


# ----------------------------------------------------------------------------- conservation guard


def leaky_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 8, 3, padding=1, bias=False),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(8, 8, 3, padding=1, bias=False),
            relu2=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(8, 3, bias=False),
        )
    ).eval()


def test_a_leaking_override_warns_and_names_the_layer():
    model, x = leaky_net(), make_input(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", cw.ConservationWarning)
        cw.Explainer(model, input_bounds=B).explain(x, 0, layers="all")  # the preset is exact
    ex = cw.Explainer(model, input_bounds=B, overrides={"conv2": Epsilon(100.0)})
    with pytest.warns(cw.ConservationWarning, match="conv2"):
        ex.explain(x, 0, layers="all")
    with pytest.warns(cw.ConservationWarning, match="conv2"):
        ex.explain(x, 0, contrast="lrp", layers=None)  # also when no layer is captured


def test_a_logit_below_the_stabiliser_warns_at_the_logit_layer():
    """The logit layer may drop CLRP's dual seed (a class without positive evidence), never the
    explained logit itself: with logits far below z+'s 1e-9 stabiliser the target map keeps
    almost none of its logit, and that is reported."""
    model, x = make_cnn(), make_input(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", cw.ConservationWarning)
        cw.lrp(model, x, 0, input_bounds=B)  # logits of order 0.1: conserved, silent
    with torch.no_grad():
        model[-1].weight.mul_(1e-12)  # logits of order 1e-13
    with pytest.warns(cw.ConservationWarning, match="layer '11'.*'target' map lost"):
        r = cw.lrp(model, x, 0, input_bounds=B)
    assert abs(float(r.sum())) < 1e-3 * abs(float(model(x)[0, 0]))


def test_conservation_warning_is_public():
    from clrp_widgets.engine.errors import ConservationWarning

    assert cw.ConservationWarning is ConservationWarning
    assert issubclass(ConservationWarning, UserWarning)


def test_engine_overrides_match_the_explainers():
    model, x = leaky_net(), make_input(1)
    override = {"conv2": Epsilon(0.25)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cw.ConservationWarning)
        a = RelevanceEngine(model, input_bounds=B, overrides=override).run(x, 1, "clrp1")
        b = cw.clrp(model, x, 1, input_bounds=B, overrides=override)
    torch.testing.assert_close(a.input[0].clamp(min=0), b)
