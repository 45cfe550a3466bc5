"""The scene generator: determinism, labels, boxes, masks, containers."""

import numpy as np
import pytest
import torch

import clrp_widgets as cw
from clrp_widgets.engine.errors import InputError
from clrp_widgets.models.scenes import CLASS_NAMES, Scenes


@pytest.fixture(scope="module")
def batch() -> Scenes:
    return cw.scenes(300, seed=11)


def test_unpacks_as_images_labels_boxes(batch):
    images, labels, boxes = batch
    assert images.dims == ("sample", "color", "y", "x")
    assert images.shape == (300, 3, 64, 64)
    assert images.dtype == np.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert labels.dims == ("sample", "class")
    assert list(labels.class_name.values) == list(CLASS_NAMES)
    assert boxes.dims == ("sample", "object", "corner")
    assert list(boxes.corner.values) == ["y0", "x0", "y1", "x1"]
    assert boxes.object_class.dims == ("sample", "object")


def test_same_seed_same_scenes_other_seed_differs():
    a, b, c = cw.scenes(20, seed=5), cw.scenes(20, seed=5), cw.scenes(20, seed=6)
    assert np.array_equal(a.images.values, b.images.values)
    assert np.array_equal(a.boxes.values, b.boxes.values)
    assert np.array_equal(a.masks.values, b.masks.values)
    assert not np.array_equal(a.images.values, c.images.values)


def test_two_or_three_distinct_classes_and_labels_agree(batch):
    cls = batch.object_class.values
    count = (cls >= 0).sum(axis=1)
    assert set(np.unique(count)) == {2, 3}
    for row, label in zip(cls, batch.labels.values, strict=True):
        present = row[row >= 0]
        assert len(set(present)) == len(present)
        assert set(np.flatnonzero(label)) == set(present)
    assert set(np.unique(cls[cls >= 0])) == set(range(len(CLASS_NAMES)))


def test_boxes_are_the_tight_boxes_of_the_masks(batch):
    boxes, masks, cls = batch.boxes.values, batch.masks.values, batch.object_class.values
    for i in range(len(batch)):
        for k in range(cls.shape[1]):
            if cls[i, k] < 0:
                assert (boxes[i, k] == -1).all() and not masks[i, k].any()
                continue
            y0, x0, y1, x1 = boxes[i, k]
            m = masks[i, k]
            assert m.sum() >= 20
            assert m[y0:y1, x0:x1].sum() == m.sum()  # box holds mask; y1/x1 exclusive
            assert m[y0].any() and m[y1 - 1].any() and m[:, x0].any() and m[:, x1 - 1].any()


def test_objects_do_not_overlap_and_are_painted(batch):
    masks = batch.masks.values
    assert masks.sum(axis=1).max() <= 1
    images = batch.images.values
    for i in range(20):
        for k in range(masks.shape[1]):
            if masks[i, k].any():
                pixels = images[i][:, masks[i, k]]
                assert pixels.std(axis=1).max() < 0.1  # one colour plus a little noise


def test_slicing_len_and_tensor(batch):
    part = batch[10:20]
    assert isinstance(part, Scenes) and len(part) == 10
    assert np.array_equal(part.images.values, batch.images.values[10:20])
    assert np.array_equal(part.masks.values, batch.masks.values[10:20])
    assert len(batch[3]) == 1
    t = part.tensor()
    assert isinstance(t, torch.Tensor) and t.shape == (10, 3, 64, 64) and t.dtype == torch.float32
    assert part.label_tensor().shape == (10, 8)
    with pytest.raises(AttributeError):
        batch.class_names = ()  # frozen


@pytest.mark.parametrize("size", [32, 128, 224])
def test_other_sizes(size):
    s = cw.scenes(6, seed=2, size=size)
    assert s.images.shape == (6, 3, size, size)
    assert s.masks.shape[-2:] == (size, size)
    assert (s.boxes.values[..., 2:] <= size).all()
    assert s.masks.sum(axis=1).max() <= 1


def test_object_count_options():
    one = cw.scenes(10, seed=0, min_objects=1, max_objects=1)
    assert (one.labels.sum("class") == 1).all()
    with pytest.raises(InputError, match="min_objects"):
        cw.scenes(2, min_objects=3, max_objects=2)
    with pytest.raises(InputError, match="size"):
        cw.scenes(2, size=8)
    assert len(cw.scenes(0)) == 0
