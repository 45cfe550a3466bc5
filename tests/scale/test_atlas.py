"""Neuron atlas from a store: reference samples (exact top-k) and their conditional maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import clrp_widgets as cw
from clrp_widgets.engine.errors import ConfigError, InputError, LayerNotFoundError
from clrp_widgets.scale import explain_dataset, reference_maps, reference_samples

LAYERS = ["features.6", "features.11", "classifier.0"]
CHUNK = 8


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    """A store of the shipped model on 10 scenes (one sample per object), and the scenes."""
    bundle, scenes = cw.load_model("shapes"), cw.scenes(10, seed=5)
    store = tmp_path_factory.mktemp("atlas") / "shapes.zarr"
    explain_dataset(
        bundle, scenes, store, methods=("clrp1", "lrp"), layers=LAYERS, chunk=CHUNK,
        progress=False, n_workers=1,
    )  # fmt: skip
    return bundle, scenes, store


@pytest.fixture(scope="module")
def brute(atlas):
    """Every sample explained on its own: scores per (by, layer) as (sample, channel)."""
    bundle, scenes, _ = atlas
    ex = cw.Explainer(bundle)
    image, target = np.nonzero(scenes.labels.values)
    x = scenes.tensor()
    scores: dict[tuple[str, str], list] = {}
    for i, t in zip(image, target, strict=True):
        tree = ex.explain(x[i : i + 1], int(t), contrast="clrp1", layers=LAYERS)
        for name in LAYERS:
            node = tree[f"layers/{name}"]
            rel = node["neuron_relevance"].values[:, 0]  # (kind, channel)
            act = node["activation"].values[0]
            act = act.reshape(act.shape[0], -1).max(axis=1)
            scores.setdefault(("contrast", name), []).append(rel[2])
            scores.setdefault(("relevance", name), []).append(rel[0])
            scores.setdefault(("activation", name), []).append(act)
    table = {key: np.stack(rows) for key, rows in scores.items()}
    return table, image, target


def ranking(scores: np.ndarray, keep: np.ndarray, k: int) -> list[int]:
    """The obvious top-k: sort (-score, sample) over the kept samples."""
    pool = sorted((-float(scores[s]), int(s)) for s in np.flatnonzero(keep))
    return [s for _, s in pool[:k]]


@pytest.fixture(params=["kept", "lazy"])
def read(request, monkeypatch):
    """How a query reads the store: the layer's slice kept in memory (small stores), or lazily
    through dask in blocks of two store chunks (stores too big to keep)."""
    from clrp_widgets.scale import atlas as module

    if request.param == "lazy":
        monkeypatch.setattr(module, "CACHE_BYTES", 0)
        monkeypatch.setattr(module, "BLOCK", 2 * CHUNK)
    return request.param


@pytest.mark.parametrize("by", ["contrast", "relevance", "activation"])
def test_top_k_equals_a_brute_force_ranking_of_independent_explanations(atlas, brute, by, read):
    _, _, store = atlas
    table, image, target = brute
    n = len(target)
    for layer, channels in (("features.11", range(0, 64, 9)), ("classifier.0", (3, 77))):
        for channel in channels:
            for k, cls in ((8, None), (n + 5, None), (3, int(target[4]))):
                refs = reference_samples(store, layer, channel, by=by, target=cls, k=k)
                keep = np.ones(n, bool) if cls is None else target == cls
                scores = table[(by, layer)][:, channel]
                expected = ranking(scores, keep, k)
                assert list(refs["sample"].values) == expected, (layer, channel, k, cls)
                assert list(refs["rank"].values) == list(range(len(expected)))
                np.testing.assert_array_equal(refs["image"].values, image[expected])
                np.testing.assert_array_equal(refs["target"].values, target[expected])
                np.testing.assert_allclose(
                    refs["score"].values, scores[expected], rtol=1e-4, atol=1e-6
                )
                assert (np.diff(refs["score"].values) <= 0).all()
                assert refs.attrs["candidates"] == keep.sum()


def test_a_kept_slice_is_read_again_when_more_chunks_complete(atlas, tmp_path):
    import shutil

    import zarr

    _, _, store = atlas
    copy = tmp_path / "partial.zarr"
    shutil.copytree(store, copy)
    root = zarr.open_group(copy, mode="r+")
    done, relevance = root["completed_by"][:], root["layers/features.11/neuron_relevance"]
    full = reference_samples(store, "features.11", 5, by="relevance", k=100)
    written = relevance[:, :, 8:16, :]
    relevance[:, :, 8:16, :] = np.nan  # chunk 1 (samples 8..15) not written yet
    root["completed_by"][1] = 0
    partial = reference_samples(copy, "features.11", 5, by="relevance", k=100)  # kept here
    assert set(partial["sample"].values) == set(full["sample"].values) - set(range(8, 16))
    relevance[:, :, 8:16, :] = written  # the run writes chunk 1, then marks it complete
    root["completed_by"][1] = done[1]
    again = reference_samples(copy, "features.11", 5, by="relevance", k=100)
    assert list(again["sample"].values) == list(full["sample"].values)


def test_ties_are_broken_by_sample_index(atlas, brute):
    _, _, store = atlas
    table, _, _ = brute
    rel = table[("relevance", "classifier.0")]  # exactly 0 where the unit's ReLU is off
    channel = int(np.argmax((rel == 0).sum(0)))  # the unit silent on most samples
    refs = reference_samples(store, "classifier.0", channel, by="relevance", k=len(rel))
    silent = refs["sample"].values[refs["score"].values == 0]
    assert len(silent) >= 2 and list(silent) == sorted(silent)


def test_reference_maps_are_the_references_conditional_maps_cropped(atlas):
    bundle, scenes, store = atlas
    refs = reference_samples(store, "features.11", 9, target=None, k=5)
    full = reference_maps(bundle, scenes, refs, "features.11", 9, crop=False)
    cropped = reference_maps(bundle, scenes, refs, crop=True)
    ex, x = cw.Explainer(bundle), scenes.tensor()
    for r in range(5):
        alone = ex.conditional(
            x[int(refs.image[r]) : int(refs.image[r]) + 1], int(refs.target[r]), "features.11", [9]
        ).values[0, 0]
        np.testing.assert_allclose(full.heatmap.values[r], alone, rtol=1e-4, atol=1e-7)
        np.testing.assert_array_equal(full.pixels.values[r], x[int(refs.image[r])].numpy())
        y0, x0, y1, x1 = (int(v) for v in cropped.box.values[r])
        inside = np.zeros(alone.shape, bool)
        inside[y0:y1, x0:x1] = True
        heat = cropped.heatmap.values[r]
        assert np.isnan(heat[~inside]).all() and not np.isnan(heat[inside]).any()
        assert np.isnan(cropped.pixels.values[r][:, ~inside]).all()
        top = alone.max()
        if top > 0:  # the box holds every pixel at >= 10% of the maximum, and is tight
            assert (alone[~inside] < 0.1 * top).all()
            strong = np.argwhere(alone >= 0.1 * top)
            assert tuple(strong.min(0)) == (y0, x0) and tuple(strong.max(0) + 1) == (y1, x1)
    np.testing.assert_array_equal(full.sample.values, refs.sample.values)
    np.testing.assert_allclose(full.map_sum.values, full.heatmap.values.sum((1, 2)), rtol=1e-5)


def test_atlas_errors_name_the_fix(atlas, tmp_path):
    bundle, scenes, store = atlas
    with pytest.raises(ConfigError, match="by must be one of"):
        reference_samples(store, "features.11", 0, by="gradient")
    with pytest.raises(LayerNotFoundError, match=r"Closest: 'features.11'"):
        reference_samples(store, "features.1", 0)
    with pytest.raises(InputError, match=r"out of range for 'features.11'; use 0..63"):
        reference_samples(store, "features.11", 64)
    with pytest.raises(ConfigError, match=r"no method 'clrp2'.*clrp1, lrp"):
        reference_samples(store, "features.11", 0, method="clrp2")
    with pytest.raises(InputError, match="unknown class name 'dot'"):
        reference_samples(store, "features.11", 0, target="dot")
    with pytest.raises(InputError, match="k must be a positive int"):
        reference_samples(store, "features.11", 0, k=0)
    with pytest.raises(InputError, match="no store at"):
        reference_samples(tmp_path / "none.zarr", "features.11", 0)
    refs = reference_samples(store, "features.11", 0, target="disk")
    assert set(refs["target"].values) == {0}
    with pytest.raises(ConfigError, match="not the data the store"):
        reference_maps(bundle, cw.scenes(10, seed=6), refs)
    with pytest.raises(InputError, match="reference_samples"):
        reference_maps(bundle, scenes, refs.drop_attrs())
    assert torch.is_tensor(scenes.tensor())
