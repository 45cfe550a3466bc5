"""explain_dataset on a real 2-worker LocalCluster: exactness, kill/interrupt and resume, errors."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import cloudpickle
import dask.array
import numpy as np
import pytest
import scale_tripwire as wire
import torch
import xarray as xr

import clrp_widgets as cw
from clrp_widgets.engine import RelevanceEngine
from clrp_widgets.engine.errors import ConfigError, InputError
from clrp_widgets.scale import explain_dataset, local_cluster, neuron_stats
from clrp_widgets.scale.store import completed
from clrp_widgets.scale.worker import model_loads

cloudpickle.register_pickle_by_value(wire)

N, CHUNK, BOUNDS = 24, 4, (0.0, 1.0)
METHODS = ("clrp1", "lrp")
POISON_CHUNK = 4  # samples 16..19; image 17 carries the poison pixel
KINDS = ("target", "dual", "contrast")


@pytest.fixture(scope="module")
def client():
    """Two worker processes with one thread each, on loopback."""
    from distributed import Client

    with local_cluster(n_workers=2) as cluster, Client(cluster) as active:
        assert list(active.nthreads().values()) == [1, 1]
        assert all(a.startswith("tcp://127.0.0.1:") for a in active.nthreads())
        yield active


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(N, 3, 16, 16, generator=generator)
    x[:, 0, 0, 0] = 0.25
    x[17, 0, 0, 0] = wire.POISON
    return x, torch.arange(N) % 5


def explain_in_process(model, x, t, bounds) -> dict[str, np.ndarray]:
    """The same chunks explained in this process, one thread, straight from the engine."""
    engine = RelevanceEngine(model, rules="paper", input_bounds=bounds)
    parts: dict[str, list] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for start in range(0, len(t), CHUNK):
            xb, tb = x[start : start + CHUNK], t[start : start + CHUNK]
            for m, method in enumerate(METHODS):
                kinds = ("target",) if method == "lrp" else KINDS
                out = engine.run(xb, tb, contrast=method, kinds=kinds, capture="all")
                if m == 0:
                    parts.setdefault("logits", []).append(out.logits.numpy())
                    for name, capture in out.layers.items():  # activation summaries
                        act = capture.activation
                        space = tuple(range(2, act.ndim))
                        top = act.amax(dim=space) if space else act
                        parts.setdefault(f"max:{name}", []).append(top.numpy())
                        mean = act.mean(dim=space) if space else act
                        parts.setdefault(f"mean:{name}", []).append(mean.numpy())
                maps = {"heatmap": out.input.sum(dim=2)}
                for name, capture in out.layers.items():
                    rel = capture.relevance
                    maps[name] = rel.sum(dim=tuple(range(3, rel.ndim))) if rel.ndim > 3 else rel
                for key, value in maps.items():
                    if method == "lrp":  # the store's convention: dual 0, contrast = target
                        value = torch.cat([value, torch.zeros_like(value), value])
                    parts.setdefault(f"{key}/{method}", []).append(value.numpy())
    finally:
        torch.set_num_threads(threads)
    ref = {"logits": np.concatenate(parts.pop("logits"))}
    for key in [k for k in parts if k.startswith(("max:", "mean:"))]:
        ref[key] = np.concatenate(parts.pop(key))
    for key in {k.split("/")[0] for k in parts}:
        ref[key] = np.stack([np.concatenate(parts[f"{key}/{m}"], axis=1) for m in METHODS])
    return ref


@pytest.fixture(scope="module")
def reference(data) -> dict[str, np.ndarray]:
    return explain_in_process(wire.make_model(), *data, BOUNDS)


def run(model, data, store, client, **kwargs):
    settings = dict(methods=METHODS, client=client, chunk=CHUNK, progress=False)
    return explain_dataset(model, data, store, input_bounds=BOUNDS, **{**settings, **kwargs})


def assert_store_equals(store: Path, ref: dict[str, np.ndarray], targets) -> None:
    tree = xr.open_datatree(store, engine="zarr")
    np.testing.assert_array_equal(tree["target"].values, np.asarray(targets))
    np.testing.assert_array_equal(tree["logits"].values, ref["logits"])
    np.testing.assert_array_equal(tree["input/heatmap"].values, ref["heatmap"])
    layers = tree.attrs["layers"]
    assert set(layers) == {k for k in ref if ":" not in k} - {"logits", "heatmap"}
    for name in layers:
        stored = tree[f"layers/{name}/neuron_relevance"]
        assert stored.dims == ("contrast", "kind", "sample", "channel")
        np.testing.assert_array_equal(stored.values, ref[name])
        top, mean = (tree[f"layers/{name}/activation_{s}"] for s in ("max", "mean"))
        assert top.dims == mean.dims == ("sample", "channel")
        np.testing.assert_array_equal(top.values, ref[f"max:{name}"])
        np.testing.assert_allclose(mean.values, ref[f"mean:{name}"], rtol=1e-6, atol=1e-7)


def chunk_hashes(data) -> list[str]:
    return [wire.batch_hash(data[0][s : s + CHUNK]) for s in range(0, N, CHUNK)]


def done_chunks(store: Path) -> int:
    try:
        return int((completed(store) != 0).sum())
    except Exception:  # not created yet, or being moved into place
        return 0


def files_with_inodes(store: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(store)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in store.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def clean_run(client, data, tmp_path_factory):
    """An uninterrupted run with a logging (not triggered) tripwire."""
    folder = tmp_path_factory.mktemp("clean")
    report = run(wire.armed_model(folder / "wire"), data, folder / "run.zarr", client)
    return report, folder


def test_store_equals_single_process_run(clean_run, client, data, reference):
    report, folder = clean_run
    assert (report.n_chunks, report.skipped, report.computed) == (6, 0, 6)
    assert (completed(report.store) == report.run_id).all()
    assert_store_equals(report.store, reference, data[1])
    # every chunk was explained exactly once, and each worker built the model once at most
    calls = wire.calls(folder / "wire")
    per_chunk = [calls[h] for h in chunk_hashes(data)]
    assert len(set(per_chunk)) == 1 and per_chunk[0] >= 1
    loads = client.run(model_loads)
    assert any(loads.values()) and all(n == 1 for w in loads.values() for n in w.values())


def test_store_opens_with_xarray_and_carries_provenance(clean_run, data):
    store = clean_run[0].store
    root = xr.open_zarr(store)
    assert isinstance(root.logits.data, dask.array.Array)
    assert root.logits.chunks[0] == (CHUNK,) * (N // CHUNK)
    assert list(root.contrast.values) == list(METHODS) and list(root.kind.values) == list(KINDS)
    for key in ("package_version", "model", "model_fingerprint", "methods", "rules", "layers"):
        assert root.attrs[key], key
    assert root.attrs["data_fingerprint"] and root.attrs["config_hash"]
    heat = xr.open_zarr(store, group="input").heatmap
    assert heat.dims == ("contrast", "kind", "sample", "y", "x") and heat.shape[-2:] == (16, 16)
    layer = root.attrs["layers"][0]
    single = xr.open_zarr(store, group=f"layers/{layer}").neuron_relevance
    assert single.sel(kind="contrast", contrast="clrp1").shape == (N, 4)


def test_interrupted_client_resumes_without_recomputing(client, data, reference, tmp_path):
    folder, store = tmp_path / "wire", tmp_path / "run.zarr"
    model = wire.armed_model(folder)
    (folder / "hold").touch()
    running = threading.Event()

    def interrupt_once_only_the_stalled_chunk_is_left() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (folder / "held").exists() and done_chunks(store) == 5:
                if running.is_set():
                    os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does
                return
            time.sleep(0.05)
        (folder / "abort").touch()  # give up: release the stalled task so the run fails
        (folder / "hold").unlink()

    watcher = threading.Thread(target=interrupt_once_only_the_stalled_chunk_is_left)
    # Ctrl-C raises KeyboardInterrupt in a plain Python process; test runners (pytest-xdist's
    # workers) may ignore SIGINT, so restore Python's default handler for this test
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher.start()
    running.set()
    try:
        with pytest.raises(KeyboardInterrupt):
            run(model, data, store, client)
    finally:
        running.clear()
        watcher.join()
        signal.signal(signal.SIGINT, handler)
    first = completed(store)
    assert (first != 0).sum() == 5 and first[POISON_CHUNK] == 0
    with pytest.warns(UserWarning, match="unfinished"):
        assert neuron_stats(store).attrs["samples"] == N - CHUNK
    # end the stalled task (cancelled futures keep running on their worker) before resuming
    (folder / "abort").touch()
    (folder / "hold").unlink()
    deadline = time.monotonic() + 60
    while not (folder / "aborted").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    before = files_with_inodes(store)

    report = run(wire.make_model(), data, store, client)

    assert (report.skipped, report.computed) == (5, 1)
    final = completed(store)
    assert final[POISON_CHUNK] == report.run_id
    np.testing.assert_array_equal(np.delete(final, POISON_CHUNK), np.delete(first, POISON_CHUNK))
    after = files_with_inodes(store)
    assert {path: after[path] for path in before} == before  # no finished chunk was rewritten
    assert len(after) > len(before)
    assert_store_equals(store, reference, data[1])


def test_killed_worker_loses_no_chunk(clean_run, client, data, reference, tmp_path):
    folder, store = tmp_path / "wire", tmp_path / "run.zarr"
    model = wire.armed_model(folder)
    (folder / "kill").touch()
    report = run(model, data, store, client)
    assert not (folder / "kill").exists()  # a worker claimed it and SIGKILLed itself
    assert (report.skipped, report.computed) == (0, 6)
    assert_store_equals(store, reference, data[1])
    clean, killed = wire.calls(clean_run[1] / "wire"), wire.calls(folder)
    hashes = chunk_hashes(data)
    poison = hashes[POISON_CHUNK]
    assert killed[poison] == clean[poison] + 1  # the killed attempt, then one full retry
    assert len(wire.pids(folder, poison)) == 2
    assert [killed[h] for h in hashes if h != poison] == [clean[h] for h in hashes if h != poison]


def test_other_settings_on_a_store_are_refused(clean_run, client, data):
    store = clean_run[0].store
    before = files_with_inodes(store)
    with pytest.raises(ConfigError, match=r"other settings \(methods: stored"):
        run(wire.make_model(), data, store, client, methods=("clrp2",))
    with pytest.raises(ConfigError, match="chunk: stored 4, now 6"):
        run(wire.make_model(), data, store, client, chunk=6)
    other = (data[0].flip(0), data[1])
    with pytest.raises(ConfigError, match="data_fingerprint"):
        run(wire.make_model(), other, store, client)
    retrained = wire.make_model()
    retrained[0].bias.add_(0.1)
    with pytest.raises(ConfigError, match="model_fingerprint"):
        run(retrained, data, store, client)
    assert files_with_inodes(store) == before


def test_bad_store_paths_give_clear_errors(data, tmp_path):
    model = wire.make_model()
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        run(model, data, tmp_path / "a_file", None)
    with pytest.raises(InputError, match="does not exist; create it first"):
        run(model, data, tmp_path / "missing" / "run.zarr", None)
    with pytest.raises(InputError, match="local directory path"):
        run(model, data, "s3://bucket/run.zarr", None)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a clrp-widgets store"):
        run(model, data, tmp_path / "notes", None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "notes"]


def test_bad_arguments_fail_before_any_work(data, tmp_path):
    model, store = wire.make_model(), tmp_path / "run.zarr"
    with pytest.raises(InputError, match="target 7 is out of range"):
        run(model, (data[0], torch.full((N,), 7)), store, None)
    with pytest.raises(ConfigError, match="unknown method 'clrp3'"):
        run(model, data, store, None, methods=("clrp3",))
    with pytest.raises(ConfigError, match="sample 2 has that target"):
        run(model, data, store, None, methods=("clrp1", 2))
    with pytest.raises(InputError, match="chunk must be a positive int"):
        run(model, data, store, None, chunk=0)
    with pytest.raises(InputError, match="bundle must be"):
        run("shapes", data, store, None)
    assert not store.exists()


def test_shipped_model_loads_by_name_once_per_worker(client, tmp_path):
    bundle, scenes = cw.load_model("shapes"), cw.scenes(5, seed=3)
    report = explain_dataset(
        bundle,
        scenes,
        tmp_path / "s.zarr",
        client=client,
        chunk=CHUNK,
        methods=METHODS,
        progress=False,
    )
    image, target = np.nonzero(scenes.labels.values)
    assert report.computed == report.n_chunks == -(-len(target) // CHUNK)
    loads = [w.get("shapes", 0) for w in client.run(model_loads).values()]
    assert max(loads) == 1 and sum(loads) >= 1
    tree = report.open()
    np.testing.assert_array_equal(tree["image"].values, image)
    assert list(tree["class_name"].values) == list(bundle.class_names)
    ref = explain_in_process(
        bundle.model, scenes.tensor()[image], torch.from_numpy(target), bundle.input_bounds
    )
    assert_store_equals(report.store, ref, target)
    # the Explorer shows the data-set mean of the store's stats next to one image's bars
    stats = neuron_stats(report.store).compute()
    explorer = cw.Explorer(
        bundle, scenes.tensor()[:1], target=int(target[0]), dataset_stats=stats
    ).wait()  # the Explorer displays at once and computes its first view in the background
    assert list(explorer.bars.bars.labels)[-1] == "data-set mean"


def test_without_a_client_a_local_cluster_is_started_and_closed(data, reference, tmp_path):
    before = set(multiprocessing.active_children())
    report = run(wire.make_model(), data, tmp_path / "own.zarr", None, n_workers=1)
    assert (report.skipped, report.computed) == (0, 6)
    assert_store_equals(report.store, reference, data[1])
    assert set(multiprocessing.active_children()) <= before  # its worker process is gone


def test_neuron_stats_are_per_class_means_and_stds(clean_run, reference, data):
    stats = neuron_stats(clean_run[0].store)
    dims = ("contrast", "class", "layer", "channel")
    assert stats["mean"].dims == stats["std"].dims == dims
    assert isinstance(stats["mean"].data, dask.array.Array)  # lazy until computed
    stats = stats.compute()
    targets = data[1].numpy()
    assert list(stats["n_samples"].values) == list(np.bincount(targets))
    assert list(stats.layer.values) == clean_run[0].open().attrs["layers"]
    for layer in stats.layer.values:
        contrast = reference[layer][:, 2]  # (contrast, sample, channel)
        width = contrast.shape[-1]
        assert int(stats.n_channels.sel(layer=layer)) == width
        for c in range(5):
            one = stats.sel({"class": c, "layer": layer})
            members = contrast[:, targets == c]
            mean, std = one["mean"][:, :width], one["std"][:, :width]
            np.testing.assert_allclose(mean, members.mean(1), rtol=1e-5, atol=1e-8)
            np.testing.assert_allclose(std, members.std(1), rtol=1e-4, atol=1e-8)
            assert np.isnan(one["mean"].values[:, width:]).all()
    # the docstring's recipe: one class and layer, its own channels only
    layer = stats.layer.values[2]
    one = stats.sel({"class": 3, "layer": layer, "contrast": "clrp1"})
    one = one.isel(channel=slice(0, int(one.n_channels)))
    assert one["mean"].shape == (reference[layer].shape[-1],)


def test_neuron_stats_other_groupings_and_errors(clean_run, reference, tmp_path):
    store = clean_run[0].store
    predicted = reference["logits"].argmax(1)
    stats = neuron_stats(store, by="predicted", kind="target")
    assert stats.attrs["by"] == "predicted" and stats.attrs["kind"] == "target"
    counts = np.bincount(predicted, minlength=5)
    assert list(stats["n_samples"].values) == [n for n in counts if n]
    with pytest.raises(ConfigError, match="by must be one of"):
        neuron_stats(store, by="image")
    with pytest.raises(ConfigError, match="kind must be one of"):
        neuron_stats(store, kind="clipped")
    with pytest.raises(InputError, match="no store at"):
        neuron_stats(tmp_path / "nothing.zarr")


KILLED_CLIENT = """
import sys, torch
sys.path.insert(0, {tests!r})
import cloudpickle, scale_tripwire as wire
from clrp_widgets.scale import explain_dataset
cloudpickle.register_pickle_by_value(wire)
x, t = torch.load({data!r})
explain_dataset(wire.armed_model(__import__("pathlib").Path({wire!r})), (x, t), {store!r},
                methods={methods!r}, chunk={chunk}, progress=False, input_bounds={bounds!r},
                n_workers=2)  # one to stall on the poison chunk, one for the rest
"""


def test_killed_client_resumes_to_an_identical_store(clean_run, client, data, tmp_path):
    """SIGKILL the whole run (client, scheduler, workers) with one chunk left: the rerun finishes
    it, and the store equals an uninterrupted run's, activation summaries included."""
    import subprocess
    import sys

    folder, store = tmp_path / "wire", tmp_path / "run.zarr"
    folder.mkdir()
    (folder / "hold").touch()  # the poison chunk stalls until the kill
    torch.save(data, tmp_path / "data.pt")
    script = KILLED_CLIENT.format(
        tests=str(Path(__file__).parent),
        data=str(tmp_path / "data.pt"),
        wire=str(folder),
        store=str(store),
        methods=METHODS,
        chunk=CHUNK,
        bounds=BOUNDS,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run_ = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not ((folder / "held").exists() and done_chunks(store) == 5):
            assert run_.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run never reached its last chunk"
            time.sleep(0.05)
    finally:
        os.killpg(run_.pid, signal.SIGKILL)  # the run's own session: client and its cluster
        run_.wait()
    first = completed(store)
    assert (first != 0).sum() == 5 and first[POISON_CHUNK] == 0

    report = run(wire.make_model(), data, store, client)

    assert (report.skipped, report.computed) == (5, 1)
    resumed, clean = xr.open_datatree(store, engine="zarr"), clean_run[0].open()
    for path in ["/", *(f"layers/{name}" for name in clean.attrs["layers"]), "input"]:
        left = resumed[path].to_dataset().drop_vars("completed_by", errors="ignore")
        right = clean[path].to_dataset().drop_vars("completed_by", errors="ignore")
        xr.testing.assert_identical(left.drop_attrs(), right.drop_attrs())
    variables = set(resumed[f"layers/{clean.attrs['layers'][0]}"].data_vars)
    assert variables == {"neuron_relevance", "activation_max", "activation_mean"}


def test_a_store_of_the_earlier_format_names_the_fix(clean_run, client, data, tmp_path):
    import shutil

    import zarr

    old = tmp_path / "old.zarr"
    shutil.copytree(clean_run[0].store, old)
    zarr.open_group(old, mode="r+").attrs["format"] = "clrp-widgets scale store 1"
    with pytest.raises(ConfigError, match=r"earlier format.*to a new path"):
        run(wire.make_model(), data, old, client)
    with pytest.raises(ConfigError, match="earlier format"):
        neuron_stats(old)
