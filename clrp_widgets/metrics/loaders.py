"""Loaders for real data sets with boxes: an ImageNet-style folder and PASCAL VOC 2007.

Both read PASCAL-VOC-style XML (``<object><name>…</name><bndbox><xmin>…``), whose pixel
coordinates are 1-based and inclusive; they become 0-based boxes with exclusive ends, scaled to
the ``size`` × ``size`` model input each image is resized to (no crop, so boxes stay exact).
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clrp_widgets.engine.errors import ConfigError, InputError
from clrp_widgets.metrics.data import EvalData, pad_objects

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
Preprocess = Callable[[Image.Image], torch.Tensor]
Box = tuple[int, int, int, int]


def class_index(
    class_names: Sequence[str] = (), classes_file: str | Path | None = None
) -> dict[str, int]:
    """Map annotation names to the model's class indices.

    ``classes_file`` is either JSON (``{"name": index}``) or text with one class per line in
    index order, keyed by the line's first word: ImageNet's ``LOC_synset_mapping.txt``
    (``n01440764 tench, Tinca tinca``) maps WordNet ids. Without a file, names match
    ``class_names`` exactly or case-insensitively with ``_`` for spaces.
    """
    if classes_file is not None:
        text = Path(classes_file).read_text()
        if Path(classes_file).suffix == ".json":
            return {str(k): int(v) for k, v in json.loads(text).items()}
        lines = [ln.split()[0] for ln in text.splitlines() if ln.strip()]
        return {name: i for i, name in enumerate(lines)}
    out = {name: i for i, name in enumerate(class_names)}
    out.update({_norm(name): i for i, name in enumerate(class_names)})
    return out


def _norm(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


def parse_voc_xml(path: str | Path, include_difficult: bool = False) -> list[tuple[str, Box]]:
    """(name, (y0, x0, y1, x1)) per object of one VOC-style XML, 0-based with exclusive ends."""
    root = ET.parse(path).getroot()
    out = []
    for obj in root.iter("object"):
        if not include_difficult and (obj.findtext("difficult") or "0").strip() == "1":
            continue
        bb = obj.find("bndbox")
        name = obj.findtext("name")
        if bb is None or name is None:
            raise InputError(f"{path}: an <object> lacks <name> or <bndbox>; fix the XML.")
        x0, y0, x1, y1 = (float(bb.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
        out.append((name.strip(), (int(y0) - 1, int(x0) - 1, int(y1), int(x1))))
    return out


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a float tensor (3, H, W) in [0, 1]."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


def load_annotated(
    pairs: Sequence[tuple[Path, Path]],
    classes: Mapping[str, int],
    size: int,
    preprocess: Preprocess | None = None,
    include_difficult: bool = False,
) -> EvalData:
    """EvalData from (image path, XML path) pairs: resized to ``size``, boxes scaled to match.

    ``preprocess`` turns the resized PIL image into model input (default: [0, 1] tensor); it
    must keep the ``size`` × ``size`` shape. Objects whose class is unknown raise ConfigError.
    """
    images, labels, objects, ids = [], [], [], []
    n_classes = max(classes.values(), default=-1) + 1
    unknown: set[str] = set()
    for img_path, xml_path in pairs:
        with Image.open(img_path) as im:
            w0, h0 = im.size
            resized = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        x = (preprocess or to_tensor)(resized)
        x = x[0] if x.ndim == 4 else x
        if tuple(x.shape[-2:]) != (size, size):
            raise ConfigError(
                f"preprocess changed the image size to {tuple(x.shape[-2:])}, expected {size}; "
                "boxes would no longer match. Pass a preprocess that only normalises."
            )
        objs = []
        for name, (y0, x0, y1, x1) in parse_voc_xml(xml_path, include_difficult):
            c = classes.get(name, classes.get(_norm(name)))
            if c is None:
                unknown.add(name)
                continue
            sy, sx = size / h0, size / w0
            box = (
                max(0, math.floor(y0 * sy)),
                max(0, math.floor(x0 * sx)),
                min(size, math.ceil(y1 * sy)),
                min(size, math.ceil(x1 * sx)),
            )
            objs.append((c, box))
        label = np.zeros(n_classes, dtype=bool)
        label[[c for c, _ in objs]] = True
        images.append(x)
        labels.append(label)
        objects.append(objs)
        ids.append(img_path.name)
    if unknown:
        raise ConfigError(
            f"annotation names not among the model's classes: {sorted(unknown)[:10]}. Pass "
            "--classes FILE (e.g. ImageNet's LOC_synset_mapping.txt, or JSON {name: index})."
        )
    if not images:
        raise InputError("no annotated images found; check the folder layout.")
    boxes, object_class = pad_objects(objects)
    inverse: dict[int, str] = {}
    for name, c in classes.items():
        inverse.setdefault(c, name)
    names = tuple(inverse.get(c, str(c)) for c in range(n_classes))
    return EvalData(torch.stack(images), np.stack(labels), boxes, object_class, tuple(ids), names)


def imagenet_pairs(
    root: str | Path, annotations: str | Path | None = None
) -> list[tuple[Path, Path]]:
    """(image, XML) pairs of an ImageNet-style folder, sorted by path.

    Images anywhere under ``root`` (e.g. ``root/<wnid>/<name>.JPEG``); each image's XML has the
    same stem, next to it or anywhere under ``annotations``. Images without XML are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; pass the ImageNet-style image folder.")
    xml_root = Path(annotations) if annotations is not None else root
    xmls = {p.stem: p for p in sorted(xml_root.rglob("*.xml"))}
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [(p, xmls[p.stem]) for p in images if p.stem in xmls]


def voc07_pairs(root: str | Path, split: str = "test") -> list[tuple[Path, Path]]:
    """(image, XML) pairs of a VOC 2007 split; ``root``: ``VOCdevkit`` or ``VOCdevkit/VOC2007``."""
    root = Path(root)
    if (root / "VOC2007").is_dir():
        root = root / "VOC2007"
    ids_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not ids_file.is_file():
        raise InputError(
            f"{ids_file} not found; pass the VOC2007 folder holding ImageSets/Main/{split}.txt, "
            "JPEGImages/ and Annotations/."
        )
    ids = [ln.split()[0] for ln in ids_file.read_text().splitlines() if ln.strip()]
    return [(root / "JPEGImages" / f"{i}.jpg", root / "Annotations" / f"{i}.xml") for i in ids]


def load_imagenet_folder(
    root: str | Path,
    class_names: Sequence[str] = (),
    *,
    size: int = 224,
    annotations: str | Path | None = None,
    classes_file: str | Path | None = None,
    preprocess: Preprocess | None = None,
    limit: int | None = None,
) -> EvalData:
    """Load an ImageNet-style folder with VOC-style XML boxes (see :func:`imagenet_pairs`)."""
    pairs = imagenet_pairs(root, annotations)[:limit]
    return load_annotated(pairs, class_index(class_names, classes_file), size, preprocess)


def load_voc07(
    root: str | Path,
    class_names: Sequence[str] = (),
    *,
    size: int = 224,
    split: str = "test",
    include_difficult: bool = False,
    classes_file: str | Path | None = None,
    preprocess: Preprocess | None = None,
    limit: int | None = None,
) -> EvalData:
    """Load a PASCAL VOC 2007 split; objects flagged difficult are left out unless asked for.

    The model's classes must be VOC's (by name), or give ``classes_file``.
    """
    pairs = voc07_pairs(root, split)[:limit]
    classes = class_index(class_names, classes_file)
    return load_annotated(pairs, classes, size, preprocess, include_difficult)
