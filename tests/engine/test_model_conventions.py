"""Conventions of models nobody here wrote (issue 20): what they return, where their input
goes first, explicit padding, modules called on constants, class tokens, and small leaks.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import clrp_widgets as cw
from clrp_widgets.engine import Gradient, RelevanceEngine
from clrp_widgets.engine.errors import ConfigError, ConservationWarning, InputError

B = (-1.0, 1.0)


def body() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 4, bias=False),
    ).double()


def image(n: int = 1, size: int = 8) -> Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, size, size, generator=g, dtype=torch.float64) * 2 - 1


def lrp_map(model: nn.Module, x: Tensor, **kwargs) -> Tensor:
    return cw.lrp(model.eval(), x, 1, input_bounds=B, **kwargs)


# ----------------------------------------------------------------------------- outputs


class Returns(nn.Module):
    """The body, its logits returned as ``wrap(logits, features)``."""

    def __init__(self, wrap) -> None:
        super().__init__()
        self.body, self.wrap = body(), wrap

    def forward(self, x: Tensor):
        logits = self.body(x)
        return self.wrap(logits, x.mean((2, 3)))


class ModelOutput(OrderedDict):
    """Hugging Face's ``ModelOutput`` in short: a mapping with attribute access."""

    def __getattr__(self, key: str):
        return self[key]


AUTOMATIC = {
    "model_output": lambda lg, f: ModelOutput(loss=None, logits=lg, hidden_states=f),
    "dict_logits": lambda lg, f: {"logits": lg, "features": f},
    "dict_one_tensor": lambda lg, f: {"scores": lg},
    "tuple_one_score_tensor": lambda lg, f: (lg, f[:, :, None]),
}


@pytest.mark.parametrize("kind", list(AUTOMATIC))
def test_outputs_holding_the_logits_are_read_without_a_wrapper(kind):
    x = image()
    want = lrp_map(body(), x)
    torch.testing.assert_close(lrp_map(Returns(AUTOMATIC[kind]), x), want, rtol=0, atol=1e-12)


SELECTED = {
    "scores": (lambda lg, f: {"scores": lg, "features": f}, "scores"),
    "index": (lambda lg, f: (lg, f), 0),
    "callable": (lambda lg, f: {"a": {"b": lg}}, lambda out: out["a"]["b"]),
}


@pytest.mark.parametrize("kind", list(SELECTED))
def test_ambiguous_outputs_name_the_choice_and_output_selects(kind):
    wrap, selector = SELECTED[kind]
    x = image()
    if not callable(selector):
        with pytest.raises(ConfigError, match="output="):
            lrp_map(Returns(wrap), x)
    want = lrp_map(body(), x)
    got = lrp_map(Returns(wrap), x, output=selector)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    tree = cw.Explainer(Returns(wrap).eval(), input_bounds=B, output=selector).explain(x, 1)
    assert tree["logits"].shape == (1, 4)


def test_a_wrong_selector_says_what_the_model_returned():
    with pytest.raises(ConfigError, match=r"'scores'.*tensor") as err:
        lrp_map(Returns(SELECTED["scores"][0]), image(), output="logits")
    assert "features" in str(err.value)


# ----------------------------------------------------------------------------- first layer


class SpaceToDepth(nn.Module):
    """TResNet's stem: pixel_unshuffle, then a conv on 4x the channels. The head is defined
    first, so definition order would take it for the first layer."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Linear(8, 4, bias=False)
        self.stem = nn.Conv2d(12, 8, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.stem(F.pixel_unshuffle(x, 2)))
        return self.head(h.mean((2, 3)))


def test_the_first_layer_is_the_one_the_input_reaches():
    model, x = SpaceToDepth().double().eval(), image()
    tree = cw.Explainer(model, input_bounds=B).explain(x, 1, "lrp", layers="all")
    assert "stem" in tree["layers"].children
    rel = float(tree["input"]["relevance"].sum())
    assert rel == pytest.approx(float(tree["logits"].values[0, 1]), rel=1e-6)  # z^B: exact


def test_an_input_the_first_layer_cannot_take_names_both():
    model = SpaceToDepth().double().eval()
    with pytest.raises((InputError, ConfigError), match="stem") as err:
        lrp_map(model, image()[:, :2])
    assert "channel" in str(err.value)


# ----------------------------------------------------------------------------- padding


class PadThenConv(nn.Module):
    """An explicit zero padding (``ZeroPad2d`` or ``F.pad``) before a conv with padding 0."""

    def __init__(self, functional: bool) -> None:
        super().__init__()
        reference = body()
        self.functional = functional
        self.pad = nn.ZeroPad2d(1)
        self.conv = nn.Conv2d(3, 6, 3, padding=0, bias=False).double()
        self.conv.weight.data.copy_(reference[0].weight.data)
        self.rest = reference[1:]

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (1, 1, 1, 1)) if self.functional else self.pad(x)
        return self.rest(self.conv(x))


@pytest.mark.parametrize("functional", [False, True], ids=["ZeroPad2d", "F.pad"])
@pytest.mark.parametrize("contrast", ["lrp", "clrp1"])
def test_explicit_padding_before_the_first_conv_equals_the_conv_padding(functional, contrast):
    """z^B sees the padded zeros as constants (their bounds are 0, not the input's), as it does
    a conv's own padding: the same maps, and nothing lands on the padding."""
    x = image()
    ex = cw.Explainer(body().eval(), input_bounds=B)
    want = ex.explain(x, 1, contrast)["input"]["relevance"].values
    ex = cw.Explainer(PadThenConv(functional).eval(), input_bounds=B)
    got = ex.explain(x, 1, contrast)["input"]["relevance"].values
    assert abs(got - want).max() <= 1e-12


# ----------------------------------------------------------------------------- constants


class PositionBias(nn.Module):
    """Swin-V2's continuous position bias in short: an MLP (a module with a rule) run on a
    constant coordinate table, its output added to the signal."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.cpb = nn.Sequential(nn.Linear(2, 8, bias=False), nn.ReLU(), nn.Linear(8, 6))
        self.fc = nn.Linear(6, 4, bias=False)
        self.register_buffer("coords", torch.rand(8, 8, 2))

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.conv(x))
        bias = self.cpb(self.coords).permute(2, 0, 1)  # (6, 8, 8): depends on no input
        return self.fc((h + bias).mean((2, 3)))


def test_modules_called_on_constants_are_constants():
    model, x = PositionBias().double().eval(), image()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConservationWarning)
        tree = cw.Explainer(model, input_bounds=B).explain(x, 1, "clrp1", layers="all")
    assert "cpb.0" not in tree["layers"].children  # not a layer of the explanation
    heat = torch.as_tensor(tree["input"]["relevance"].values)
    assert torch.isfinite(heat).all() and heat.abs().max() > 0


class TinyViT(nn.Module):
    """Patch embedding, a class token concatenated in front, a token mixer, the class token's
    features to the head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Conv2d(3, 6, 4, stride=4, bias=False)
        self.cls = nn.Parameter(torch.rand(1, 1, 6))
        self.mix = nn.Linear(5, 5, bias=False)
        self.mix.weight.data.abs_()  # every token feeds the class token's features
        self.head = nn.Linear(6, 4, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)  # (N, 4, 6)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], 1)  # (N, 5, 6)
        mixed = torch.relu(self.mix(tokens.transpose(1, 2))).transpose(1, 2)
        return self.head(mixed[:, 0])


def test_class_tokens_keep_their_share_and_the_guard_counts_it():
    model, x = TinyViT().double().eval(), image()
    engine = RelevanceEngine(model, input_bounds=B)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConservationWarning)
        out = engine.run(x, 1, "lrp")
    masks = engine.constant_tokens()
    assert len(masks) == 1
    ((name, mask),) = masks.items()
    assert mask.shape[-2:] == (5, 6) and bool(mask[..., 0, :].all()) and not mask[..., 1:, :].any()
    kept = engine.run(x, 1, "lrp", capture=[name])
    at_token = float((kept.layers[name].relevance[0] * mask).sum())
    logit = float(model(x).detach()[0, 1])
    assert 0.01 < at_token / logit < 1
    assert float(out.input.sum()) + at_token == pytest.approx(logit, rel=1e-6)


# ----------------------------------------------------------------------------- the guard


class Scaled(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, h: Tensor) -> Tensor:
        return h * self.factor


@pytest.mark.parametrize(("gain", "warns"), [(5e-5, False), (2e-4, True)])
def test_the_guard_reports_leaks_above_one_in_ten_thousand(gain, warns):
    """A rule that gains ``gain`` of the logit (the gradient through ``h * (1 + gain)``):
    reported above the guard's 1e-4, relative to the explained output at any size (lcnet's
    logit was 2e-4)."""
    reference = body()
    model = nn.Sequential(*reference[:2], Scaled(1 + gain), *reference[2:]).eval()
    x = image()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cw.lrp(model, x, 1, input_bounds=B, overrides={"2:mul": Gradient()})
    lost = [w for w in caught if issubclass(w.category, ConservationWarning)]
    assert bool(lost) == warns, [str(w.message) for w in lost]
    with torch.no_grad():
        model[-1].weight.mul_(1e-2)  # a logit of 4e-4: the same share, the same verdict
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cw.lrp(model, x, 1, input_bounds=B, overrides={"2:mul": Gradient()})
    lost = [w for w in caught if issubclass(w.category, ConservationWarning)]
    assert bool(lost) == warns, [str(w.message) for w in lost]
