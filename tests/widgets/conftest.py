"""The widget tests' shared fixtures: a small explainer (``TinyNet``), an image and an Explorer."""

import pytest
import torch
from test_explorer import NAMES, TinyNet

import clrp_widgets as cw
from clrp_widgets.widgets.explorer import Explorer


@pytest.fixture(scope="module")
def explainer():
    torch.manual_seed(3)
    return cw.Explainer(TinyNet().eval(), input_bounds=(0.0, 1.0), class_names=NAMES)


@pytest.fixture(scope="module")
def image():
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def ex(explainer, image):
    return Explorer(explainer, image).wait()
