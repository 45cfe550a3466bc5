"""Loaders for real data sets with boxes: an ImageNet-style folder and PASCAL VOC 2007.

Both read PASCAL-VOC-style XML (``<object><name>…</name><bndbox><xmin>…``), whose pixel
coordinates are 1-based and inclusive; they become 0-based boxes with exclusive ends, scaled to
the ``size`` × ``size`` model input each image is resized to (no crop, so boxes stay exact).
"""

from __future__ import annotations

import json
import math
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

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
            return _json_classes(Path(classes_file), text)
        lines = [ln.split()[0] for ln in text.splitlines() if ln.strip()]
        return {name: i for i, name in enumerate(lines)}
    out = {name: i for i, name in enumerate(class_names)}
    out.update({_norm(name): i for i, name in enumerate(class_names)})
    return out


def _json_classes(path: Path, text: str) -> dict[str, int]:
    try:
        mapping = json.loads(text)
    except ValueError as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); write {{name: index}}.") from None
    if not isinstance(mapping, dict):
        raise ConfigError(f"{path} holds a {type(mapping).__name__}; write {{name: index}}.")
    for name, index in mapping.items():
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ConfigError(
                f"{path}: class {name!r} has index {index!r}; class indices are integers >= 0 "
                "(the model's output positions)."
            )
    return {str(k): v for k, v in mapping.items()}


def _norm(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


def parse_voc_xml(path: str | Path, include_difficult: bool = False) -> list[tuple[str, Box]]:
    """(name, (y0, x0, y1, x1)) per object of one VOC-style XML, 0-based with exclusive ends."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise InputError(
            f"{path} is not well-formed XML ({err}); fix or remove the file."
        ) from None
    out = []
    for obj in root.iter("object"):
        if not include_difficult and (obj.findtext("difficult") or "0").strip() == "1":
            continue
        bb = obj.find("bndbox")
        name = obj.findtext("name")
        if bb is None or name is None:
            raise InputError(f"{path}: an <object> lacks <name> or <bndbox>; fix the XML.")
        x0, y0, x1, y1 = (_coordinate(path, name, bb, k) for k in ("xmin", "ymin", "xmax", "ymax"))
        if x1 < x0 or y1 < y0:
            raise InputError(
                f"{path}: the box of object {name.strip()!r} is inverted (xmin {x0}, xmax {x1}, "
                f"ymin {y0}, ymax {y1}); fix the XML so that min <= max."
            )
        out.append((name.strip(), (int(y0) - 1, int(x0) - 1, int(y1), int(x1))))
    return out


def _coordinate(path: str | Path, name: str, box: ET.Element, key: str) -> float:
    text = box.findtext(key)
    try:
        value = float(text or "")
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(
            f"{path}: object {name.strip()!r} has <{key}> {text!r}, not a number; fix the XML."
        )
    return value


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
    strict: bool = False,
) -> EvalData:
    """EvalData from (image path, XML path) pairs: resized to ``size``, boxes scaled to match.

    ``preprocess`` turns the resized PIL image into model input (default: [0, 1] tensor); it
    must keep the ``size`` × ``size`` shape. Objects whose class is unknown raise ConfigError.
    An image that cannot be read (missing, truncated, not an image) is skipped, and all skipped
    files are reported in one ``UserWarning``; with ``strict`` the first one raises InputError.
    """
    images, labels, objects, ids = [], [], [], []
    n_classes = max(classes.values(), default=-1) + 1
    unknown: set[str] = set()
    skipped: list[str] = []
    for img_path, xml_path in pairs:
        try:
            with Image.open(img_path) as im:
                w0, h0 = im.size
                resized = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            if strict:
                raise InputError(
                    f"cannot read image {img_path} ({err}); replace or remove it, or run "
                    "without --strict (strict=False) to skip unreadable images."
                ) from None
            skipped.append(f"{img_path} ({type(err).__name__})")
            continue
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
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} unreadable image(s): {'; '.join(skipped[:5])}"
            f"{' ...' if len(skipped) > 5 else ''}. Replace or remove them; use --strict "
            "(strict=True) to stop at the first one.",
            UserWarning,
            stacklevel=3,
        )
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
    for i in ids:
        if i in (".", "..") or "/" in i or "\\" in i or Path(i).is_absolute():
            raise InputError(
                f"{ids_file}: image id {i!r} points outside the data set; ids must be plain "
                "file names (e.g. 000001). Fix the split file."
            )
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
    strict: bool = False,
) -> EvalData:
    """Load an ImageNet-style folder with VOC-style XML boxes (see :func:`imagenet_pairs`).

    Unreadable images are skipped and reported, or raise with ``strict`` (:func:`load_annotated`).
    """
    pairs = imagenet_pairs(root, annotations)[:limit]
    classes = class_index(class_names, classes_file)
    return load_annotated(pairs, classes, size, preprocess, strict=strict)


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
    strict: bool = False,
) -> EvalData:
    """Load a PASCAL VOC 2007 split; objects flagged difficult are left out unless asked for.

    The model's classes must be VOC's (by name), or give ``classes_file``. Image ids must be
    plain file names (a split file cannot reach outside the data set). Unreadable images are
    skipped and reported, or raise with ``strict`` (:func:`load_annotated`).
    """
    pairs = voc07_pairs(root, split)[:limit]
    classes = class_index(class_names, classes_file)
    return load_annotated(pairs, classes, size, preprocess, include_difficult, strict)
