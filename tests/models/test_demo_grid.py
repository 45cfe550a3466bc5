"""The first demo: a PNG grid of LRP / CLRP1 / CLRP2 maps on a two-object scene."""

import numpy as np
from PIL import Image

import clrp_widgets as cw
from clrp_widgets.models import demo_grid


def test_demo_grid_writes_png_and_prints_classes(tmp_path, capsys):
    out = demo_grid.main(["--out", str(tmp_path / "demo" / "grid.png")])
    printed = capsys.readouterr().out
    assert "top classes:" in printed and str(out) in printed
    image = Image.open(out)
    side = 64 * demo_grid.SCALE
    assert image.size == (4 * side, 2 * (side + demo_grid.LABEL_H))  # two classes, four columns


def test_clrp_puts_relevance_on_the_explained_object():
    bundle = cw.load_model("shapes")
    scene = demo_grid.pick_scene(bundle, seed=7)
    maps = demo_grid.explain(bundle, scene)
    order = [int(c) for c in scene.object_class.values[0] if c >= 0]
    for method in ("CLRP1", "CLRP2"):
        for k, cls in enumerate(order):
            shares = demo_grid.box_shares(scene, maps[method, cls])
            assert shares[k] > shares[1 - k], (method, cls, shares)
    lrp = [maps["LRP", cls] for cls in order]
    similarity = np.corrcoef(lrp[0].ravel(), lrp[1].ravel())[0, 1]
    assert similarity > 0.5  # LRP hardly depends on the class: the paper's point
