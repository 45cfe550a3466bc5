"""One set of weights, written with modules and written functionally, gives the same maps.

Issue 9: a ResNet-18 written the way users write models (its own block class, ``F.relu(out +
skip)``, ``F.adaptive_avg_pool2d``, ``torch.flatten``) got maps 170x off those of torchvision's
resnet18 with the same weights, because functional operations fell through to the gradient.
Here the op-level engine must give identical maps (1e-8, float64) for:

- torchvision's resnet18 and a user-style ResNet-18 (out-of-place ``+``, in-place ``+=``,
  ``torch.add``), loaded from its state dict;
- a DenseNet-style concatenating net written with modules and the same net written with
  ``F.conv2d(x, self.weight)``, ``F.relu``, ``F.avg_pool2d``, ``torch.cat``, ``F.linear``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from zoo_models import BOUNDS, build, reinitialise, zoo_input

import clrp_widgets as cw

RTOL = 1e-8
VARIANTS = ("lrp", "clrp1", "clrp2", "sglrp")


def maps(model: nn.Module, x: Tensor, target: int) -> dict[str, Tensor]:
    """Input maps of every variant, by the functional API."""
    out = {"lrp": cw.lrp(model, x, target, input_bounds=BOUNDS)}
    for variant in VARIANTS[1:]:
        out[variant] = cw.clrp(model, x, target, variant=variant, input_bounds=BOUNDS)
    return out


def assert_same_maps(got: dict[str, Tensor], want: dict[str, Tensor]) -> None:
    for variant, w in want.items():
        scale = float(w.abs().max())
        assert scale > 0, variant
        torch.testing.assert_close(got[variant], w, rtol=RTOL, atol=RTOL * scale, msg=variant)


# ----------------------------------------------------------------------------- ResNet-18


class UserBlock(nn.Module):
    """A basic residual block as users write it; ``add`` picks how the skip is added."""

    def __init__(self, cin: int, cout: int, stride: int, add: str) -> None:
        super().__init__()
        self.add = add
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.downsample is None else self.downsample(x)
        if self.add == "inplace":
            out += skip
            return F.relu(out)
        if self.add == "torch.add":
            return F.relu(torch.add(out, skip))
        return F.relu(out + skip)


class UserResNet18(nn.Module):
    """ResNet-18 with torchvision's parameter names, functional stem pooling and head."""

    def __init__(self, classes: int, add: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        widths = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        for i, (cin, cout, stride) in enumerate(widths, start=1):
            blocks = [UserBlock(cin, cout, stride, add), UserBlock(cout, cout, 1, add)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.fc = nn.Linear(512, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


@pytest.fixture(scope="module")
def torchvision_resnet():
    return build("resnet18")


@pytest.fixture(scope="module")
def torchvision_maps(torchvision_resnet) -> dict[str, Tensor]:
    case = torchvision_resnet
    return maps(case.model, case.x, case.target)


@pytest.mark.parametrize("add", ["out + skip", "inplace", "torch.add"])
def test_user_resnet18_gives_torchvisions_maps(torchvision_resnet, torchvision_maps, add):
    case = torchvision_resnet
    user = UserResNet18(10, add).double().eval()
    user.load_state_dict(case.model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(user(case.x), case.model(case.x), rtol=1e-12, atol=1e-12)
    got = maps(user, case.x, case.target)
    logit = float(case.model(case.x)[0, case.target])
    assert float(got["lrp"].sum()) == pytest.approx(logit, rel=1e-6)
    assert_same_maps(got, torchvision_maps)


def test_user_resnet18_layers_match_torchvisions(torchvision_resnet):
    """Relevance at the module layers that both models share is identical too."""
    case = torchvision_resnet
    user = UserResNet18(10, "out + skip").double().eval()
    user.load_state_dict(case.model.state_dict())
    layers = ["conv1", "layer1.0.conv2", "layer2.0.downsample.0", "layer3.1.conv1", "fc"]
    trees = [
        cw.Explainer(m, input_bounds=BOUNDS).explain(case.x, case.target, layers=layers)
        for m in (case.model, user)
    ]
    for layer in layers:
        want = trees[0]["layers"][layer]["relevance"].values
        got = trees[1]["layers"][layer]["relevance"].values
        scale = float(abs(want).max())
        torch.testing.assert_close(
            torch.as_tensor(got), torch.as_tensor(want), rtol=RTOL, atol=RTOL * scale, msg=layer
        )


# ----------------------------------------------------------------------------- DenseNet-style

GROWTH, STEM = 6, 8


class ModuleDenseLayer(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU()
        self.conv1 = nn.Conv2d(cin, 2 * GROWTH, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(2 * GROWTH), nn.ReLU()
        self.conv2 = nn.Conv2d(2 * GROWTH, GROWTH, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        new = self.conv1(self.relu1(self.norm1(x)))
        return torch.cat([x, self.conv2(self.relu2(self.norm2(new)))], 1)


class ModuleDenseNet(nn.Module):
    """Stem, dense block (3 layers), transition, dense block (2 layers), head: all modules."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, STEM, 3, padding=1, bias=False)
        c1 = STEM + 3 * GROWTH
        self.block1 = nn.Sequential(*(ModuleDenseLayer(STEM + i * GROWTH) for i in range(3)))
        self.transition = nn.Sequential(
            nn.BatchNorm2d(c1), nn.ReLU(), nn.Conv2d(c1, STEM, 1, bias=False), nn.AvgPool2d(2)
        )
        self.block2 = nn.Sequential(*(ModuleDenseLayer(STEM + i * GROWTH) for i in range(2)))
        c2 = STEM + 2 * GROWTH
        self.head = nn.Sequential(
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c2, classes, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.block1(self.stem(x))
        return self.head(self.block2(self.transition(x)))


class FunctionalDenseLayer(nn.Module):
    """The same dense layer with its weights as plain parameters and functional calls."""

    def __init__(self, m: ModuleDenseLayer) -> None:
        super().__init__()
        self.norm1, self.norm2 = m.norm1, m.norm2  # shared BatchNorm modules (same buffers)
        self.weight1 = nn.Parameter(m.conv1.weight.detach().clone())
        self.weight2 = nn.Parameter(m.conv2.weight.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        new = F.conv2d(F.relu(self.norm1(x)), self.weight1)
        new = F.conv2d(F.relu(self.norm2(new)), self.weight2, padding=1)
        return torch.cat((x, new), dim=1)


class FunctionalDenseNet(nn.Module):
    def __init__(self, m: ModuleDenseNet) -> None:
        super().__init__()
        self.stem_weight = nn.Parameter(m.stem.weight.detach().clone())
        self.block1 = nn.ModuleList(FunctionalDenseLayer(layer) for layer in m.block1)
        self.norm_t = m.transition[0]
        self.weight_t = nn.Parameter(m.transition[2].weight.detach().clone())
        self.block2 = nn.ModuleList(FunctionalDenseLayer(layer) for layer in m.block2)
        self.norm_h = m.head[0]
        self.fc_weight = nn.Parameter(m.head[4].weight.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        x = F.conv2d(x, self.stem_weight, padding=1)
        for layer in self.block1:
            x = layer(x)
        x = F.avg_pool2d(F.conv2d(F.relu(self.norm_t(x)), self.weight_t), 2)
        for layer in self.block2:
            x = layer(x)
        x = F.adaptive_avg_pool2d(F.relu(self.norm_h(x)), (1, 1))
        return F.linear(x.flatten(1), self.fc_weight)


@pytest.fixture(scope="module")
def densenets():
    torch.manual_seed(0)
    x = zoo_input(16)
    modules = reinitialise(ModuleDenseNet().double().eval(), x)
    functional = FunctionalDenseNet(modules).eval()
    with torch.no_grad():
        target = int(modules(x)[0].argmax())
        torch.testing.assert_close(functional(x), modules(x), rtol=1e-12, atol=1e-12)
    return modules, functional, x, target


def test_functional_densenet_gives_the_module_nets_maps(densenets):
    modules, functional, x, target = densenets
    want = maps(modules, x, target)
    logit = float(modules(x)[0, target])
    assert float(want["lrp"].sum()) == pytest.approx(logit, rel=1e-6)
    assert_same_maps(maps(functional, x, target), want)


def test_functional_densenet_is_conservative_at_its_op_layers(densenets):
    """Functional convolutions and pooling are layers (``<module path>:<op>``); at the ones every
    path goes through (stem, transition pooling, logits) the relevance sums to the logit."""
    _, functional, x, target = densenets
    ex = cw.Explainer(functional, input_bounds=BOUNDS)
    tree = ex.explain(x, target, contrast="lrp", layers="all")
    names = list(tree["layers"].children)
    assert ":conv2d" in names  # the stem, called by the root module
    assert "block1.0:conv2d" in names and "block1.0:conv2d.1" in names
    logit = float(tree["logits"].values[0, target])
    for name in (":conv2d", ":avg_pool2d", ":linear"):
        total = float(tree["layers"][name]["relevance"].sum())
        assert total == pytest.approx(logit, rel=1e-6), name
