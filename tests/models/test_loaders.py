"""load_model: torchvision loading path from a local cache, offline errors, bundles, photos."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import clrp_widgets as cw
from clrp_widgets.engine.errors import ConfigError, ModelNotAvailableError
from clrp_widgets.models.bundle import Preprocess
from clrp_widgets.models.loaders import SHAPES_WEIGHTS

RESNET50_FILE = "resnet50-11ad3fa6.pth"  # torchvision's DEFAULT (IMAGENET1K_V2) weights file


@pytest.fixture(scope="module")
def resnet50_cache(tmp_path_factory) -> tuple[Path, dict]:
    """A TORCH_HOME whose hub cache holds a random-weight resnet50 state dict."""
    home = tmp_path_factory.mktemp("torch_home")
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(3)
    state = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(state, folder / RESNET50_FILE)
    return home, state


def test_torchvision_model_loads_from_torch_home_cache(resnet50_cache, monkeypatch):
    home, state = resnet50_cache
    monkeypatch.setenv("TORCH_HOME", str(home))
    bundle = cw.load_model("resnet50")
    assert isinstance(bundle, cw.ModelBundle) and bundle.name == "resnet50"
    assert not bundle.model.training
    assert all(not p.requires_grad for p in bundle.model.parameters())
    loaded = bundle.model.state_dict()
    assert all(
        torch.equal(loaded[k], state[k]) for k in state
    )  # the file's tensors, no random init
    assert len(bundle.class_names) == 1000 and bundle.class_names[281] == "tabby"
    low, high = bundle.input_bounds
    assert np.allclose(low, (-2.1179, -2.0357, -1.8044), atol=1e-4)
    assert np.allclose(high, (2.2489, 2.4286, 2.64), atol=1e-4)
    x = bundle.preprocess(cw.sample_image("chelsea"))
    assert x.shape == (1, 3, 224, 224)
    assert (x.amin(dim=(0, 2, 3)) >= torch.tensor(low) - 1e-5).all()
    assert (x.amax(dim=(0, 2, 3)) <= torch.tensor(high) + 1e-5).all()
    with torch.no_grad():
        assert bundle.model(x).shape == (1, 1000)


def test_other_cached_weights_version_is_used_with_its_preprocessing(
    resnet50_cache, tmp_path, monkeypatch
):
    home, _ = resnet50_cache
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "resnet50-0676ba61.pth").symlink_to(home / "hub" / "checkpoints" / RESNET50_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # only the IMAGENET1K_V1 file is cached
    bundle = cw.load_model("resnet50")
    assert bundle.preprocess.resize == 256  # V1's preset (V2 resizes to 232)


def test_weights_path_overrides_the_cache(resnet50_cache, tmp_path, monkeypatch):
    home, _ = resnet50_cache
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache
    bundle = cw.load_model("resnet50", weights_path=home / "hub" / "checkpoints" / RESNET50_FILE)
    assert bundle.name == "resnet50"


@pytest.mark.parametrize("name", ["vgg16", "vgg16_bn", "alexnet", "resnet50"])
def test_offline_without_file_names_file_place_and_source(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelNotAvailableError) as info:
        cw.load_model(name)
    message = str(info.value)
    expected = tmp_path / "hub" / "checkpoints"
    assert str(expected) in message  # where to put it
    assert ".pth" in message and "https://download.pytorch.org/models/" in message  # how to get it
    assert "TORCH_HOME" in message and "weights_path" in message


def test_wrong_state_dict_is_refused(tmp_path):
    path = tmp_path / "not_vgg.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ModelNotAvailableError, match="not a state dict of torchvision's vgg16"):
        cw.load_model("vgg16", weights_path=path)


def test_unknown_name():
    with pytest.raises(ConfigError, match="choose one of shapes, vgg16"):
        cw.load_model("vgg19")


class _Payload:
    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_shapes_weights_load_with_weights_only(tmp_path):
    saved = torch.load(SHAPES_WEIGHTS, weights_only=True)
    assert set(saved) == {"state_dict", "meta"}
    assert SHAPES_WEIGHTS.stat().st_size <= 4_000_000
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"state_dict": _Payload()}, protocol=2))
    with pytest.raises(pickle.UnpicklingError):
        cw.load_model("shapes", weights_path=evil)


def test_shapes_bundle_fields():
    bundle = cw.load_model("shapes")
    assert bundle.name == "shapes"
    assert bundle.class_names == cw.scenes(1).class_names
    assert bundle.input_bounds == (0.0, 1.0)
    assert not bundle.model.training
    assert all(not p.requires_grad for p in bundle.model.parameters())
    names = dict(bundle.model.named_modules())
    assert isinstance(names["features.0"], torch.nn.Conv2d)
    assert isinstance(names["classifier.2"], torch.nn.Linear)


def test_preprocess_accepts_pil_numpy_and_tensor():
    prep = cw.load_model("shapes").preprocess
    image = cw.scenes(1, seed=4).images.values[0]  # (3, 64, 64) float
    as_uint8 = (image.transpose(1, 2, 0) * 255).round().astype(np.uint8)
    inputs = [
        torch.from_numpy(image),
        torch.from_numpy(image)[None],
        image.transpose(1, 2, 0),
        as_uint8,
        Image.fromarray(as_uint8),
        Image.fromarray(as_uint8).convert("RGBA"),
        np.dstack([as_uint8, np.full((64, 64), 255, np.uint8)]),
        image,  # channel-first numpy
        cw.scenes(1, seed=4).images,  # the DataArray itself
    ]
    outs = [prep(x) for x in inputs]
    for out in outs:
        assert out.shape == (1, 3, 64, 64) and out.dtype == torch.float32
        assert torch.allclose(out, outs[0], atol=1 / 255)
    big = prep(Image.fromarray(as_uint8).resize((128, 128)))
    assert big.shape == (1, 3, 64, 64)


def test_own_module_wraps_in_a_bundle():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten(), torch.nn.Linear(72, 2))
    bundle = cw.ModelBundle(net, ["a", "b"], (0.0, 1.0))
    assert bundle.class_names == ("a", "b") and bundle.name == "custom"
    assert not net.training
    assert bundle.preprocess(np.zeros((8, 8, 3), np.uint8)).shape == (1, 3, 8, 8)


def test_preprocess_imagenet_bounds_match_the_paper_extremes():
    low, high = Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)).input_bounds
    assert min(low) == pytest.approx(-2.1179, abs=1e-4)
    assert max(high) == pytest.approx(2.64, abs=1e-4)


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut", "rocket", "motorcycle_left"])
def test_sample_images(name):
    image = cw.sample_image(name)
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    array = cw.sample_image(name, as_array=True)
    assert array.dtype == np.uint8 and array.shape == (image.height, image.width, 3)


def test_sample_image_unknown():
    with pytest.raises(ConfigError, match="chelsea"):
        cw.sample_image("dog")
