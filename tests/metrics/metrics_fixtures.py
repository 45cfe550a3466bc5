"""Writers of tiny data sets in the ImageNet-folder and VOC07 layouts, for loader tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def voc_xml(path: Path, width: int, height: int, objects: list[tuple[str, tuple, int]]) -> None:
    """Write a PASCAL-VOC XML; objects are (name, (y0, x0, y1, x1) 0-based exclusive, difficult)."""
    objs = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{difficult}</difficult><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, (y0, x0, y1, x1), difficult in objects
    )
    path.write_text(
        f"<annotation><folder>VOC2007</folder><filename>{path.stem}.jpg</filename>"
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
        f"<segmented>0</segmented>{objs}</annotation>"
    )


def write_image(path: Path, array: np.ndarray) -> None:
    """Save a (3, H, W) float image in [0, 1] (PNG is lossless, JPEG is not)."""
    hwc = (np.asarray(array).transpose(1, 2, 0) * 255).round().astype(np.uint8)
    Image.fromarray(hwc).save(path)


def write_scenes_as_imagenet(scenes, root: Path, xml_dir: Path | None = None) -> None:
    """Each scene as root/<first class>/<id>.png with a VOC XML beside it (or in ``xml_dir``)."""
    names = scenes.class_names
    for i in range(len(scenes)):
        classes = scenes.object_class.values[i]
        boxes = scenes.boxes.values[i]
        pairs = zip(classes, boxes, strict=True)
        objs = [(names[c], tuple(int(v) for v in b), 0) for c, b in pairs if c >= 0]
        folder = root / objs[0][0]
        folder.mkdir(parents=True, exist_ok=True)
        write_image(folder / f"scene_{i:04d}.png", scenes.images.values[i])
        (xml_dir or folder).mkdir(parents=True, exist_ok=True)
        h, w = scenes.images.shape[-2:]
        voc_xml((xml_dir or folder) / f"scene_{i:04d}.xml", w, h, objs)
