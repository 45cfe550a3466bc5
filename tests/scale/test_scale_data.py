"""The accepted forms of ``data`` for explain_dataset, and their errors (no cluster needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import clrp_widgets as cw
from clrp_widgets.engine.errors import InputError
from clrp_widgets.scale.data import sample_table


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_scenes_give_one_sample_per_present_class():
    scenes = cw.scenes(4, seed=0, size=32)
    table = sample_table(scenes)
    present = scenes.labels.values > 0
    assert len(table) == int(present.sum())
    assert torch.equal(table.images, scenes.tensor())
    for image, target in zip(table.image, table.target, strict=True):
        assert present[image, target]
    assert list(table.image) == sorted(table.image)  # grouped by image, in order
    x, t = table.batch(0, 3)
    np.testing.assert_array_equal(x, scenes.tensor()[table.image[:3]].numpy())
    np.testing.assert_array_equal(t, table.target[:3])


def test_tensor_and_batches_give_the_same_table(images):
    targets = torch.arange(10) % 3
    table = sample_table((images, targets))
    assert list(table.target) == list(targets) and list(table.image) == list(range(10))
    batches = [(images[:4], targets[:4]), (images[4:], targets[4:])]
    loader = DataLoader(TensorDataset(images, targets), batch_size=3)
    for other in (sample_table(batches), sample_table(loader)):
        assert other.fingerprint() == table.fingerprint()
    assert list(sample_table((images, 2)).target) == [2] * 10


def test_fingerprint_sees_every_pixel_and_target(images):
    targets = torch.zeros(10, dtype=torch.long)
    base = sample_table((images, targets)).fingerprint()
    nudged = images.clone()
    nudged[9, 2, 7, 7] += 1e-6
    assert sample_table((nudged, targets)).fingerprint() != base
    assert sample_table((images, targets.roll(1) + (torch.arange(10) == 0))).fingerprint() != base


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (torch.rand(2, 3, 8, 8), "has no targets; pass data=\\(images, targets\\)"),
        ((torch.rand(3, 8, 8), 0), "must be \\(N, C, H, W\\)"),
        ((torch.rand(0, 3, 8, 8), 0), "hold no sample"),
        ((torch.zeros(2, 3, 8, 8, dtype=torch.uint8), 0), "must be floating point"),
        ((torch.rand(2, 3, 8, 8), [0, 1, 2]), "targets must be an int or 2 integer"),
        ((torch.rand(2, 3, 8, 8), torch.tensor([0.0, 1.0])), "integer class indices"),
        ([], "iterable of batches was empty"),
        ([torch.rand(2, 3, 8, 8)], "each batch of an iterable must be \\(images, targets\\)"),
        (42, "data of type int is not supported"),
    ],
)
def test_unusable_data_is_refused_with_the_fix(data, message):
    with pytest.raises(InputError, match=message):
        sample_table(data)
