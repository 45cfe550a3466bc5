"""First demo: ``python -m clrp_widgets.models.demo_grid`` writes ``build/demo/grid.png``.

On the shipped "shapes" model and a generated two-object scene it prints the top classes and,
for each object's class, draws the LRP, CLRP1 and CLRP2 input heatmaps (summed over colour) with
every object's box (the explained class's box green and thick, the others grey). It also prints
the share of positive relevance inside each object's box: LRP maps of the two classes look alike,
CLRP maps put their relevance on the explained object.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import clrp_widgets as cw
from clrp_widgets.models.bundle import ModelBundle
from clrp_widgets.models.scenes import Scenes

METHODS = ("LRP", "CLRP1", "CLRP2")
SCALE = 4  # pixels per image pixel in the PNG
LABEL_H = 18


def pick_scene(bundle: ModelBundle, seed: int) -> Scenes:
    """The first two-object scene of ``seed`` whose labels the model gets exactly right."""
    batch = cw.scenes(64, seed=seed, min_objects=2, max_objects=2)
    with torch.no_grad():
        pred = bundle.model(batch.tensor()) > 0
    right = (pred == batch.label_tensor().bool()).all(dim=1)
    return batch[int(right.float().argmax())]


def explain(bundle: ModelBundle, scene: Scenes) -> dict[tuple[str, int], np.ndarray]:
    """``{(method, class): heatmap (H, W)}`` for each class present in the one-image ``scene``."""
    x = scene.tensor()
    maps = {}
    for cls in np.flatnonzero(scene.labels.values[0]):
        target = int(cls)
        runs = {
            "LRP": cw.lrp(bundle.model, x, target, input_bounds=bundle.input_bounds),
            "CLRP1": cw.clrp(bundle.model, x, target, input_bounds=bundle.input_bounds),
            "CLRP2": cw.clrp(
                bundle.model, x, target, variant="clrp2", input_bounds=bundle.input_bounds
            ),
        }
        for method, relevance in runs.items():
            maps[method, target] = relevance[0].sum(0).numpy()
    return maps


def box_shares(scene: Scenes, heatmap: np.ndarray) -> list[float]:
    """Share of the positive relevance inside each present object's box."""
    positive = np.clip(heatmap, 0, None)
    total = positive.sum() or 1.0
    shares = []
    for y0, x0, y1, x1 in scene.boxes.values[0]:
        if y0 >= 0:
            shares.append(float(positive[y0:y1, x0:x1].sum() / total))
    return shares


def _colour(heatmap: np.ndarray) -> Image.Image:
    """Signed heatmap to RGB: white at 0, red for positive, blue for negative (own max scale)."""
    scaled = heatmap / (np.abs(heatmap).max() or 1.0)
    pos, neg = np.clip(scaled, 0, 1), np.clip(-scaled, 0, 1)
    rgb = np.stack([1 - neg, 1 - pos - neg, 1 - pos], axis=-1)
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))


def render_grid(
    bundle: ModelBundle, scene: Scenes, maps: dict[tuple[str, int], np.ndarray]
) -> Image.Image:
    """Rows: explained classes; columns: the image, then LRP, CLRP1, CLRP2 with boxes."""
    size = scene.images.sizes["y"] * SCALE
    classes = sorted({cls for _, cls in maps})
    grid = Image.new("RGB", (size * 4, (size + LABEL_H) * len(classes)), "white")
    draw = ImageDraw.Draw(grid)
    photo = (scene.images.values[0].transpose(1, 2, 0) * 255).astype(np.uint8)
    boxes = scene.boxes.values[0]
    objects = scene.object_class.values[0]
    for row, cls in enumerate(classes):
        top = row * (size + LABEL_H)
        tiles = [Image.fromarray(photo)] + [_colour(maps[m, cls]) for m in METHODS]
        titles = [f"image, explain {bundle.class_names[cls]}"] + [
            f"{m} {bundle.class_names[cls]}" for m in METHODS
        ]
        for col, (tile, title) in enumerate(zip(tiles, titles, strict=True)):
            left = col * size
            grid.paste(tile.resize((size, size), Image.Resampling.NEAREST), (left, top + LABEL_H))
            draw.text((left + 4, top + 3), title, fill="black")
            for (y0, x0, y1, x1), obj in zip(boxes, objects, strict=True):
                if obj < 0:
                    continue
                mine = obj == cls
                draw.rectangle(
                    [
                        left + x0 * SCALE,
                        top + LABEL_H + y0 * SCALE,
                        left + x1 * SCALE - 1,
                        top + LABEL_H + y1 * SCALE - 1,
                    ],
                    outline=(0, 160, 0) if mine else (120, 120, 120),
                    width=3 if mine else 1,
                )
    return grid


def main(argv: list[str] | None = None) -> Path:
    """Print the top classes and box shares, write the PNG grid, print and return its path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("build/demo/grid.png"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    bundle = cw.load_model("shapes")
    scene = pick_scene(bundle, args.seed)
    with torch.no_grad():
        probs = torch.sigmoid(bundle.model(scene.tensor()))[0]
    print("top classes:")
    for p, cls in zip(*probs.topk(4), strict=True):
        print(f"  {bundle.class_names[int(cls)]:<9} {float(p):.3f}")
    maps = explain(bundle, scene)
    names = [bundle.class_names[c] for c in scene.object_class.values[0] if c >= 0]
    print("share of positive relevance inside each box (" + ", ".join(names) + "):")
    for (method, cls), heatmap in maps.items():
        shares = ", ".join(f"{s:.2f}" for s in box_shares(scene, heatmap))
        print(f"  {method:<6} {bundle.class_names[cls]:<9} {shares}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    render_grid(bundle, scene, maps).save(args.out)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
