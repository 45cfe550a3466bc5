"""Baselines against independent references: by hand, by a rewritten model, by direct Grad-CAM."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from clrp_widgets.engine import baselines as bl
from clrp_widgets.engine.errors import CLRPError, ConfigError, InputError, LayerNotFoundError


def small_cnn(inplace: bool = True) -> nn.Module:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(inplace=inplace),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(inplace=inplace),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 16),
        nn.ReLU(inplace=inplace),
        nn.Linear(16, 5),
    )
    return model.eval()


def small_mlp() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 4)).eval()


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
    }


def assert_untouched(model: nn.Module, before: dict) -> None:
    after = model.state_dict()
    assert before["state"].keys() == after.keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after[key]), key
    assert [m.training for m in model.modules()] == before["training"]
    assert [p.requires_grad for p in model.parameters()] == before["requires_grad"]
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert not module._backward_hooks and not module._backward_pre_hooks
    assert all(p.grad is None for p in model.parameters())


@pytest.fixture
def x() -> torch.Tensor:
    torch.manual_seed(3)
    return torch.randn(3, 3, 8, 8)


# ----- by hand on a one-hidden-layer net: g = W1ᵀ ρ(W2[t]) with the rule's ReLU backward ρ


def hand_maps(model: nn.Module, x: torch.Tensor, target: list[int]) -> dict[str, torch.Tensor]:
    w1, b1, w2 = model[0].weight, model[0].bias, model[2].weight
    flat = x.flatten(1)
    out = {}
    for name in ("gradient", "deconvnet", "guided_backprop"):
        rows = []
        for i, t in enumerate(target):
            z = w1 @ flat[i] + b1
            g = w2[t].clone()
            if name == "gradient":
                g = g * (z > 0)
            elif name == "deconvnet":
                g = g.clamp(min=0)
            else:
                g = g.clamp(min=0) * (z > 0)
            rows.append(w1.T @ g)
        out[name] = torch.stack(rows).reshape(x.shape)
    out["gradient_x_input"] = out["gradient"] * x
    return out


@pytest.mark.parametrize("method", ["gradient", "gradient_x_input", "deconvnet", "guided_backprop"])
def test_pixel_baselines_match_hand_computation(method: str) -> None:
    model = small_mlp()
    torch.manual_seed(4)
    x = torch.randn(4, 12)
    target = [0, 3, 1, 3]
    expected = hand_maps(model, x, target)[method]
    got = bl.baseline(model, x, target, method)
    assert got.shape == x.shape
    torch.testing.assert_close(got.detach(), expected.detach(), rtol=1e-5, atol=1e-6)


# ----- a rewritten model: ReLUs replaced by modules whose gradient is rewired with tensor hooks


class HookedReLU(nn.Module):
    def __init__(self, rule: str) -> None:
        super().__init__()
        self.rule = rule

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.rule == "deconvnet":  # value relu(z), gradient passes unmasked
            out = torch.relu(z).detach() + z - z.detach()
        else:
            out = torch.relu(z)
        out.register_hook(lambda g: g.clamp(min=0))
        return out


def rewritten(model: nn.Module, rule: str) -> nn.Module:
    clone = copy.deepcopy(model)
    for name, module in list(clone.named_modules()):
        if isinstance(module, nn.ReLU):
            clone._modules[name] = HookedReLU(rule)  # flat Sequential: names are direct children
    return clone


@pytest.mark.parametrize("rule", ["deconvnet", "guided_backprop"])
@pytest.mark.parametrize("inplace", [True, False])
def test_modified_relu_baselines_match_rewritten_model(
    rule: str, inplace: bool, x: torch.Tensor
) -> None:
    model = small_cnn(inplace)
    before = snapshot(model)
    reference_model = rewritten(model, rule)
    leaf = x.clone().requires_grad_(True)
    target = torch.tensor([1, 4, 0])
    score = reference_model(leaf).gather(1, target[:, None]).sum()
    (expected,) = torch.autograd.grad(score, leaf)
    got = bl.baseline(model, x, target, rule)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    assert_untouched(model, before)
    assert not torch.equal(got, bl.gradient(model, x, target))  # the rule does change the map


def test_gradient_matches_autograd_and_is_per_sample(x: torch.Tensor) -> None:
    model = small_cnn()
    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(leaf)[:, 2].sum(), leaf)
    got = bl.gradient(model, x, 2)
    torch.testing.assert_close(got, expected)
    single = bl.gradient(model, x[1:2], [2])
    torch.testing.assert_close(got[1:2], single, rtol=1e-5, atol=1e-7)


# ----- Grad-CAM against a direct computation on the split model


def direct_gradcam(model: nn.Sequential, x: torch.Tensor, target: list[int], cut: int):
    head, tail = model[: cut + 1], model[cut + 1 :]
    a = head(x).detach().requires_grad_(True)
    score = tail(a.clone())[torch.arange(len(target)), target].sum()
    (g,) = torch.autograd.grad(score, a)
    cam = torch.relu((g.mean((2, 3))[:, :, None, None] * a).sum(1)).detach()
    return cam, F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear")[:, 0]


def test_gradcam_default_layer_is_last_conv_and_matches_direct(x: torch.Tensor) -> None:
    model = small_cnn(inplace=True)  # in-place ReLU right after the layer must not leak in
    before = snapshot(model)
    target = [0, 2, 4]
    assert bl.last_conv_name(model) == "2"
    low, up = direct_gradcam(small_cnn(inplace=False), x, target, cut=2)
    torch.testing.assert_close(bl.gradcam(model, x, target, upsample=False), low)
    got = bl.baseline(model, x, target, "gradcam")
    assert got.shape == (3, 8, 8) and (got >= 0).all()
    torch.testing.assert_close(got, up)
    assert_untouched(model, before)


def test_gradcam_at_chosen_pooling_layer(x: torch.Tensor) -> None:
    model = small_cnn(inplace=False)
    low, _ = direct_gradcam(model, x, [1, 1, 1], cut=4)
    got = bl.gradcam(model, x, 1, layer="4", upsample=False)
    assert got.shape == (3, 4, 4)
    torch.testing.assert_close(got, low)


# ----- errors, and the model left untouched after them


def test_training_mode_is_restored(x: torch.Tensor) -> None:
    model = small_cnn().train()
    model[0].training = False  # a mixed state must come back exactly
    before = snapshot(model)
    with pytest.warns(UserWarning, match="training mode"):
        got = bl.guided_backprop(model, x, 0)
    assert_untouched(model, before)
    torch.testing.assert_close(got, bl.guided_backprop(small_cnn(), x, 0))


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"method": "saliency"}, ConfigError, "guided_backprop"),
        ({"method": "gradient", "layer": "2"}, ConfigError, "gradcam"),
        ({"method": "gradcam", "layer": "2x"}, LayerNotFoundError, "Closest"),
        ({"method": "gradcam", "layer": "6"}, ConfigError, "(N, K, h, w)"),
        ({"method": "guided_backprop", "target": 5}, InputError, ""),
        ({"method": "gradcam", "target": [0, 1]}, InputError, ""),
    ],
)
def test_errors_name_the_fix_and_leave_model_untouched(
    x: torch.Tensor, kwargs: dict, error: type, words: str
) -> None:
    model = small_cnn()
    before = snapshot(model)
    args = {"target": 1, **kwargs}
    with pytest.raises(error) as info:
        bl.baseline(model, x, args.pop("target"), **args)
    assert words in str(info.value)
    assert isinstance(info.value, CLRPError)
    assert_untouched(model, before)


@pytest.mark.parametrize(
    "bad",
    [
        torch.randn(3, 8, 8),
        torch.zeros(0, 3, 8, 8),
        torch.ones(1, 3, 8, 8, dtype=torch.int64),
        torch.full((1, 3, 8, 8), float("nan")),
    ],
)
@pytest.mark.parametrize("method", bl.BASELINES)
def test_bad_input_is_refused(bad: torch.Tensor, method: str) -> None:
    model = small_cnn()
    before = snapshot(model)
    with pytest.raises(InputError):
        bl.baseline(model, bad, 0, method)
    assert_untouched(model, before)


@pytest.mark.parametrize("method", bl.BASELINES)
def test_model_without_flat_logits_is_refused(x: torch.Tensor, method: str) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    before = snapshot(model)
    with pytest.raises(ConfigError, match=r"class scores of shape \(N, classes\)"):
        bl.baseline(model, x, 0, method, layer="0" if method == "gradcam" else None)
    assert_untouched(model, before)


class Exploding(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


@pytest.mark.parametrize("method", bl.BASELINES)
def test_hooks_removed_when_forward_raises(x: torch.Tensor, method: str) -> None:
    model = small_cnn()
    model.append(Exploding()).eval()
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        bl.baseline(model, x, 0, method)
    assert_untouched(model, before)


class SharedReLUBlock(nn.Module):
    """A residual block that calls one in-place ReLU module twice, as torchvision's BasicBlock."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.conv1 = nn.Conv2d(3, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.conv1(x))
        out = self.relu(self.conv2(out) + x)
        return self.head(out)


@pytest.mark.parametrize("rule", ["deconvnet", "guided_backprop"])
def test_reused_relu_module_in_a_residual_block(rule: str, x: torch.Tensor) -> None:
    model = SharedReLUBlock().eval()
    before = snapshot(model)
    reference_model = copy.deepcopy(model)
    reference_model.relu = HookedReLU(rule)
    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(reference_model(leaf)[:, 3].sum(), leaf)
    torch.testing.assert_close(bl.baseline(model, x, 3, rule), expected, rtol=1e-5, atol=1e-7)
    assert_untouched(model, before)


def test_guided_backprop_and_gradcam_on_torchvision_resnet18() -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(6)
    model = torchvision.models.resnet18(num_classes=7).eval()
    before = snapshot(model)
    reference_model = copy.deepcopy(model)
    for parent in reference_model.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(parent, name, HookedReLU("guided_backprop"))
    x = torch.randn(2, 3, 32, 32)
    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(reference_model(leaf)[:, 4].sum(), leaf)
    torch.testing.assert_close(bl.guided_backprop(model, x, 4), expected, rtol=1e-4, atol=1e-6)
    assert bl.last_conv_name(model) == "layer4.1.conv2"
    assert bl.gradcam(model, x, 4).shape == (2, 32, 32)
    assert_untouched(model, before)
