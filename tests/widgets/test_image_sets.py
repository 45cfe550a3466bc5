"""The Explorer pages through any image set without being rebuilt, and explains uploads."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import numpy as np
import pytest
import torch
import xarray as xr
from PIL import Image
from test_explorer import shown
from widget_messages import custom

import clrp_widgets as cw
from clrp_widgets.widgets.explorer import Explorer
from clrp_widgets.widgets.gallery import GalleryStrip, png_thumbnail
from clrp_widgets.widgets.sources import image_set


@pytest.fixture(scope="module")
def batch():
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def test_a_batch_pages_without_rebuilding_the_widget(explainer, batch):
    ex = Explorer(explainer, batch).wait()
    heatmap, children = ex.heatmap, ex.children
    assert (ex.gallery.total, ex.gallery.selected, ex.gallery.indices) == (4, 0, [0, 1, 2, 3])
    assert all(p.startswith("data:image/png;base64,") for p in ex.gallery.pictures)
    for i in (1, 3):
        ex.select(image=i)
        probs = explainer.predict(batch[i]).values[0]
        assert ex.target == int(np.argmax(probs)) and ex.heatmap.state["image"] == i
        want = explainer.explain(batch[i], ex.target, layers=None)["input"]["heatmap"]
        want = want.sel(kind="contrast").values[0]  # shown: one contrast pass; here t - d
        np.testing.assert_allclose(
            shown(ex.heatmap)[0], want, rtol=1e-5, atol=1e-5 * np.abs(want).max()
        )
        assert ex.heatmap.image == np.asarray(ex._image).tobytes()
    assert ex.heatmap is heatmap and ex.children == children
    custom(ex.heatmap, {"event": "page", "step": 1})  # PageDown / Alt+→ on the map
    ex.wait()
    assert ex.image == 0 and ex.gallery.selected == 0
    custom(ex.gallery, {"event": "pick", "index": 2})  # a picture in the strip
    ex.wait()
    assert ex.image == 2 and ex.gallery.selected == 2
    assert "→" in ex.gallery.captions[2]  # its prediction
    custom(ex.gallery, {"event": "step", "step": -1})  # ← on the strip
    ex.wait()
    assert ex.image == 1 and ex.gallery.selected == 1


def test_the_gallery_pages_and_ignores_malformed_messages():
    picked: list[int] = []
    strip = GalleryStrip(lambda i: png_thumbnail(np.full((8, 8, 3), i, np.uint8)), per_page=3)
    strip.on_select(lambda i: (picked.append(i), strip.select(i)))
    strip.set_images([f"img{i}" for i in range(7)], selected=0)
    assert strip.indices == [0, 1, 2] and strip.captions[1] == "2 img1"
    for bad in [
        None,
        [],
        {"event": "pick", "index": 7},
        {"event": "pick", "index": True},
        {"event": "step", "step": 5},
        {"event": "step"},
        {"event": 3},
    ]:
        custom(strip, bad)
    assert picked == []
    custom(strip, {"event": "step", "step": -1})  # wraps to the last page
    assert picked == [6] and strip.indices == [6] and strip.selected == 6
    custom(strip, {"event": "step", "step": 1})
    assert picked == [6, 0] and strip.indices == [0, 1, 2]
    strip.set_prediction(1, "disk 97%")
    assert strip.captions[1] == "2 img1 → disk 97%"


def test_scenes_xarray_and_folders_carry_labels(tmp_path):
    bundle = cw.load_model("shapes")
    sc = cw.scenes(3, seed=1)
    found = image_set(sc, bundle)
    assert len(found.xs) == 3 and found.xs[0].shape == (1, 3, 64, 64)
    names = [n for n, v in zip(sc.class_names, sc.labels.values[0], strict=True) if v > 0.5]
    assert found.labels[0] == ", ".join(names)
    ds = xr.Dataset({"images": sc.images, "labels": sc.labels})
    assert image_set(ds, bundle).labels == found.labels
    arr = sc.images.assign_coords(label=("sample", ["a", "b", "c"]))
    assert image_set(arr, bundle).labels == ["a", "b", "c"]
    torch.testing.assert_close(image_set(arr, bundle).xs[1], found.xs[1])
    for i, name in enumerate(["cat", "dog"]):
        rgb = (sc.images.values[i].transpose(1, 2, 0) * 255).round().astype(np.uint8)
        Image.fromarray(rgb).save(tmp_path / f"{name}.png")
    folder = image_set(tmp_path, bundle)
    assert folder.labels == ["cat", "dog"]
    torch.testing.assert_close(folder.xs[0], found.xs[0], atol=1 / 255, rtol=0)
    ex = Explorer(bundle, sc).wait()
    assert ex.gallery.labels == found.labels and ex.image == 0
    (tmp_path / "empty").mkdir()
    with pytest.raises(cw.CLRPError, match="no image files"):
        image_set(tmp_path / "empty", bundle)


def test_an_upload_is_explained_through_the_bundles_preprocess():
    bundle = cw.load_model("shapes")
    ex = Explorer(bundle, cw.scenes(2, seed=0)).wait()
    rgb = (np.random.default_rng(0).random((80, 100, 3)) * 255).astype(np.uint8)
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, format="PNG")
    item = {
        "name": "mine.png",
        "type": "image/png",
        "size": len(png.getvalue()),
        "content": memoryview(png.getvalue()),
        "last_modified": datetime.now(timezone.utc),
    }
    ex.controls.upload.set_trait("value", (item,))
    ex.wait()
    assert ex.image == 2 and ex.gallery.labels[2] == "upload: mine"
    want = bundle.preprocess(Image.fromarray(rgb))
    torch.testing.assert_close(ex.images.xs[2], want.reshape(1, *want.shape[-3:]))
    assert ex.heatmap.state["image"] == 2 and ex.heatmap.height == 64
    bad = dict(item, name="broken.png", content=memoryview(b"not an image"))
    ex.controls.upload.set_trait("value", (bad,))
    assert ex.image == 2 and "could not use broken.png" in ex.controls.status.value


def test_the_readme_explorer_snippet_runs():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    part = readme.split("The view on screen is one\nline away in Python:", 1)[1]
    code = re.search(r"```python\n(.*?)```", part, re.S).group(1)
    namespace = {"cw": cw, "bundle": cw.load_model("shapes")}
    exec(compile(code, "README Explorer", "exec"), namespace)
    explorer, view = namespace["explorer"], namespace["view"]
    assert explorer.image == 3 and explorer.heatmap.state["channels"] == [5]
    assert view["view"].attrs["contrast"] == "clrp2" and view["view"]["channel_maps"].shape[0] == 1
