"""Loaders on tiny fixtures written in the ImageNet-folder and VOC07 formats by the tests."""

import json

import numpy as np
import pytest
from metrics_fixtures import voc_xml, write_image, write_scenes_as_imagenet

import clrp_widgets as cw
from clrp_widgets.engine.errors import ConfigError, InputError
from clrp_widgets.metrics.loaders import (
    class_index,
    load_imagenet_folder,
    load_voc07,
    parse_voc_xml,
)


def test_parse_voc_xml_is_one_based_inclusive(tmp_path):
    voc_xml(tmp_path / "a.xml", 100, 50, [("dog", (10, 20, 30, 40), 0), ("cat", (0, 0, 5, 5), 1)])
    assert parse_voc_xml(tmp_path / "a.xml") == [("dog", (10, 20, 30, 40))]
    assert len(parse_voc_xml(tmp_path / "a.xml", include_difficult=True)) == 2
    text = (tmp_path / "a.xml").read_text()
    assert "<xmin>21</xmin>" in text and "<xmax>40</xmax>" in text


def test_imagenet_folder_round_trips_scenes_exactly(tmp_path):
    s = cw.scenes(6, seed=3)
    write_scenes_as_imagenet(s, tmp_path / "imgs")
    data = load_imagenet_folder(tmp_path / "imgs", s.class_names, size=64)
    assert len(data) == 6
    order = np.argsort([int(i[6:10]) for i in data.ids])  # folders sort by class name
    np.testing.assert_array_equal(data.labels[order], s.labels.values > 0)
    np.testing.assert_allclose(data.images[order].numpy(), s.images.values, atol=0.5 / 255 + 1e-6)
    for k, i in enumerate(order):
        for c, box in zip(s.object_class.values[k], s.boxes.values[k], strict=True):
            if c >= 0:
                assert data.region(int(i), int(c)).tolist() == [box.tolist()]


def test_imagenet_separate_annotations_classes_file_and_resizing(tmp_path):
    (tmp_path / "val" / "n02").mkdir(parents=True)
    img = np.zeros((3, 40, 80))
    write_image(tmp_path / "val" / "n02" / "x1.JPEG.png", img)  # odd names are fine
    write_image(tmp_path / "val" / "n02" / "noxml.png", img)  # skipped: no annotation
    (tmp_path / "xml").mkdir()
    voc_xml(tmp_path / "xml" / "x1.JPEG.xml", 80, 40, [("n02", (10, 20, 30, 60), 0)])
    mapping = tmp_path / "LOC_synset_mapping.txt"
    mapping.write_text("n01 tench, Tinca tinca\nn02 goldfish\n")
    data = load_imagenet_folder(
        tmp_path / "val", annotations=tmp_path / "xml", classes_file=mapping, size=20
    )
    assert data.ids == ("x1.JPEG.png",) and data.images.shape == (1, 3, 20, 20)
    assert data.labels.tolist() == [[False, True]]
    # (10, 20, 30, 60) in 40×80 -> ×0.5 in y, ×0.25 in x
    assert data.region(0, 1).tolist() == [[5, 5, 15, 15]]
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"n02": 5}))
    assert class_index(classes_file=js) == {"n02": 5}


def test_unknown_names_and_missing_folders_explain_the_fix(tmp_path):
    s = cw.scenes(2, seed=0)
    write_scenes_as_imagenet(s, tmp_path / "imgs")
    with pytest.raises(ConfigError, match="--classes"):
        load_imagenet_folder(tmp_path / "imgs", ("cat", "dog"), size=64)
    with pytest.raises(InputError, match="not a folder"):
        load_imagenet_folder(tmp_path / "nope", size=64)
    with pytest.raises(InputError, match="ImageSets"):
        load_voc07(tmp_path, size=64)


def voc07(root, n=3):
    """A VOCdevkit/VOC2007 with n images; image 0 has a second object flagged difficult."""
    base = root / "VOCdevkit" / "VOC2007"
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    ids = [f"{i:06d}" for i in range(1, n + 1)]
    for k, i in enumerate(ids):
        write_image(base / "JPEGImages" / f"{i}.jpg", rng.random((3, 30, 60)))
        objs = [("dog", (3, 6, 15, 30), 0), ("person", (0, 0, 30, 60), int(k == 0))]
        voc_xml(base / "Annotations" / f"{i}.xml", 60, 30, objs)
    (base / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids) + "\n")
    (base / "ImageSets" / "Main" / "train.txt").write_text(ids[0] + "\n")
    return root / "VOCdevkit"


VOC_NAMES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
             "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
             "train", "tvmonitor")  # fmt: skip


def test_voc07_split_difficult_and_box_scaling(tmp_path):
    root = voc07(tmp_path)
    data = load_voc07(root, VOC_NAMES, size=30)
    assert data.ids == ("000001.jpg", "000002.jpg", "000003.jpg")
    assert data.images.shape == (3, 3, 30, 30)
    assert data.labels[:, VOC_NAMES.index("dog")].all()
    person = VOC_NAMES.index("person")
    assert data.labels[:, person].tolist() == [False, True, True]  # difficult left out
    assert data.region(0, VOC_NAMES.index("dog")).tolist() == [[3, 3, 15, 15]]
    assert load_voc07(root / "VOC2007", VOC_NAMES, size=30, include_difficult=True).labels[
        0, person
    ]
    assert len(load_voc07(root, VOC_NAMES, size=30, split="train")) == 1
    assert len(load_voc07(root, VOC_NAMES, size=30, limit=2)) == 2


# ----- hostile or broken data sets (issue 10)


def test_voc_id_outside_the_data_set_is_refused(tmp_path):
    root = voc07(tmp_path)
    (tmp_path / "outside").mkdir()
    write_image(tmp_path / "outside" / "x.jpg", np.zeros((3, 30, 60)))
    voc_xml(tmp_path / "outside" / "x.xml", 60, 30, [("dog", (3, 6, 15, 30), 0)])
    split = root / "VOC2007" / "ImageSets" / "Main" / "test.txt"
    split.write_text("000001\n../../../outside/x\n")
    with pytest.raises(InputError, match=r"(?s)test\.txt.*outside/x.*outside the data set"):
        load_voc07(root, VOC_NAMES, size=30)


@pytest.mark.parametrize(
    ("box", "problem"), [((20, 6, 15, 30), "inverted"), ((3, 40, 15, 30), "inverted")]
)
def test_inverted_box_is_refused_naming_the_file(tmp_path, box, problem):
    voc_xml(tmp_path / "a.xml", 100, 50, [("dog", box, 0)])
    with pytest.raises(InputError, match=rf"(?s)a\.xml.*dog.*{problem}"):
        parse_voc_xml(tmp_path / "a.xml")


def test_xml_number_errors_name_the_file(tmp_path):
    voc_xml(tmp_path / "a.xml", 100, 50, [("dog", (10, 20, 30, 40), 0)])
    path = tmp_path / "a.xml"
    path.write_text(path.read_text().replace("<xmin>21</xmin>", "<xmin>2l</xmin>"))
    with pytest.raises(InputError, match=r"(?s)a\.xml.*dog.*xmin.*'2l'"):
        parse_voc_xml(path)
    path.write_text("<annotation><object>")
    with pytest.raises(InputError, match=r"(?s)a\.xml.*not well-formed XML"):
        parse_voc_xml(path)


def test_negative_class_ids_are_refused(tmp_path):
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"n01": 0, "n02": -3}))
    with pytest.raises(ConfigError, match=r"(?s)c\.json.*'n02'.*-3"):
        class_index(classes_file=js)
    js.write_text(json.dumps({"n01": "zero"}))
    with pytest.raises(ConfigError, match=r"(?s)c\.json.*'n01'"):
        class_index(classes_file=js)


def test_unreadable_images_are_skipped_and_reported_or_abort_with_strict(tmp_path):
    s = cw.scenes(4, seed=0)
    write_scenes_as_imagenet(s, tmp_path / "imgs")
    broken = sorted((tmp_path / "imgs").rglob("*.png"))[1]
    broken.write_bytes(b"not an image at all")
    with pytest.warns(UserWarning, match=rf"(?s)skipped 1 unreadable image.*{broken.name}"):
        data = load_imagenet_folder(tmp_path / "imgs", s.class_names, size=64)
    assert len(data) == 3 and broken.name not in data.ids
    with pytest.raises(InputError, match=rf"(?s){broken.name}.*--strict"):
        load_imagenet_folder(tmp_path / "imgs", s.class_names, size=64, strict=True)
