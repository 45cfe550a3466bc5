"""``explain_dataset``: explain a whole data set on dask.distributed into a resumable zarr store."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import dask
import numpy as np
import torch
import xarray as xr

from clrp_widgets import methods
from clrp_widgets.engine import RelevanceEngine
from clrp_widgets.engine.axes import neurons_first
from clrp_widgets.engine.errors import ConfigError, InputError
from clrp_widgets.models.loaders import MODEL_NAMES
from clrp_widgets.scale import guard
from clrp_widgets.scale import store as zstore
from clrp_widgets.scale.cluster import local_cluster
from clrp_widgets.scale.data import SampleTable, sample_table
from clrp_widgets.scale.worker import EngineSpec, ModelPlugin, explain_chunk, model_fingerprint

log = logging.getLogger("clrp_widgets.scale")
CONTRASTS = methods.CONTRASTS


@dataclass(frozen=True)
class RunReport:
    """What one ``explain_dataset`` call did.

    Attributes
    ----------
    store : pathlib.Path
        The zarr store.
    n_chunks : int
        Chunks in the store.
    skipped : int
        Chunks already complete before this call (not recomputed).
    computed : int
        Chunks this call explained and wrote.
    run_id : int
        This call's id (microseconds since the epoch at its start), written to ``completed_by``
        for each chunk it finished; 0 when there was nothing left to do.
    seconds : float
        Wall time of the call.
    """

    store: Path
    n_chunks: int
    skipped: int
    computed: int
    run_id: int
    seconds: float

    def open(self) -> xr.DataTree:
        """The whole store as a lazy DataTree."""
        return xr.open_datatree(self.store, engine="zarr")


def explain_dataset(
    bundle: Any,
    data: Any,
    store: str | os.PathLike,
    methods: str | int | Sequence[str | int] = ("clrp1",),
    layers: str | Sequence[str] | None = "all",
    client: Any = None,
    chunk: int = 32,
    progress: bool = True,
    *,
    rules: Any = "paper",
    input_bounds: Any = None,
    dual_seed: str = "uniform",
    n_workers: int | None = None,
) -> RunReport:
    """Explain every sample of ``data`` on dask.distributed and write a chunked zarr store.

    Parameters
    ----------
    bundle : cw.ModelBundle or torch.nn.Module
        The model. A bundle from ``cw.load_model(name)`` is loaded by name on each worker (once
        per worker process); any other model is pickled and handed to each worker once, by a
        worker plugin (which also reaches workers that restart or join mid-run).
    data : cw.scenes(...) result, (images, targets) or an iterable of (images, targets) batches
        Scenes give one sample per class present in each image (the ``image`` variable says which
        image). ``images`` is a float (N, C, H, W) tensor in the model's input range; ``targets``
        an int or N class indices. An iterable (e.g. a DataLoader) is read once, in order, into
        memory on the client.
    store : str or pathlib.Path
        A local directory (new or empty, or a store of an earlier call with the same settings,
        which is resumed). Workers write to it directly, so on a multi-machine cluster it must be
        on a file system they all mount. Layout: see :mod:`clrp_widgets.scale.store`.
    methods : str, int or sequence of them
        Contrasts among ``"lrp"``, ``"clrp1"``, ``"clrp2"``, ``"sglrp"`` or an int (the target
        rather than that class, labelled ``"rather_than_<k>"``). Each is one entry of the
        store's ``contrast`` dimension.
        For ``"lrp"`` the dual is 0 and the contrast equals the target map.
    layers : "all" or list of module names
        Layers whose per-channel (neuron) relevance is stored; "all" = every Conv2d, Linear and
        pooling module.
    client : distributed.Client, optional
        Use this cluster (any size). Without it ``local_cluster(n_workers)`` (worker processes
        with one thread each on 127.0.0.1, default ``min(4, cpu_count)``) is started and closed.
        For your own cluster, ``cw.scale.local_cluster`` avoids dask's malloc setting that
        halves torch's speed.
    chunk : int
        Samples per task and per zarr chunk.
    progress : bool
        Show a tqdm progress bar (notebook or terminal) over finished chunks.
    rules, input_bounds, dual_seed
        Passed to the engine; ``input_bounds`` defaults to the bundle's.
    n_workers : int, optional
        Size of the LocalCluster started when ``client`` is None.

    Returns
    -------
    RunReport
        How many chunks were skipped (already complete) and computed; ``.open()`` gives the tree.

    Examples
    --------
    In a script, call it under ``if __name__ == "__main__":`` (dask starts worker processes by
    spawning, which re-imports the script)::

        bundle = cw.load_model("shapes")
        report = cw.scale.explain_dataset(bundle, cw.scenes(1000), "shapes.zarr", chunk=32)
        report.skipped, report.computed      # rerun after an interruption: only the rest
        xr.open_zarr("shapes.zarr", group="layers/features.3").neuron_relevance
        cw.scale.neuron_stats("shapes.zarr")  # per class, layer and channel
    """
    began = time.perf_counter()
    path = zstore.local_path(store)
    model, name, class_names, bounds = _unpack(bundle, input_bounds)
    table = sample_table(data)
    contrasts = _methods(methods)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError(f"chunk must be a positive int (samples per task); got {chunk!r}")
    n_classes, channels = _probe(model, rules, bounds, dual_seed, table, contrasts, layers)
    if class_names is not None and len(class_names) != n_classes:
        raise ConfigError(
            f"the bundle names {len(class_names)} classes but the model has {n_classes} outputs; "
            "give one class name per logit"
        )
    layout = zstore.Layout(
        n_samples=len(table),
        chunk=chunk,
        image_size=(int(table.images.shape[2]), int(table.images.shape[3])),
        class_names=tuple(class_names or (str(i) for i in range(n_classes))),
        methods=tuple(_label(m) for m in contrasts),
        layers=channels,
    )
    by_name = name in MODEL_NAMES  # cw.load_model(name) gives it on every worker
    # pickled here: dask's own torch serialiser loses the module's hook dictionaries
    pickled = None if by_name else cloudpickle.dumps(model)
    spec = EngineSpec(
        name=name if by_name else None,
        shipped=None if pickled is None else hashlib.sha256(pickled).hexdigest(),
        fingerprint=model_fingerprint(model),
        rules=rules,
        input_bounds=bounds,
        dual_seed=dual_seed,
    )
    config = _config(spec, name or type(model).__name__, layout, table)
    with guard.store_lock(path):  # one run per store: a second one refuses, naming the first
        guard.clean_staging(path)
        if zstore.is_new(path):
            zstore.create(path, layout, table.image, table.target, zstore.provenance(config))
        else:
            zstore.check_settings(path, config)
            skeleton = zstore._skeleton(layout, table.image, table.target, {})
            guard.verify_structure(path, guard.expected_arrays(skeleton))
        todo = [int(i) for i in np.flatnonzero(zstore.completed(path) == 0)]
        skipped = layout.n_chunks - len(todo)
        if skipped:
            _say(
                progress,
                f"{path.name}: {skipped} of {layout.n_chunks} chunks already complete, skipped",
            )
        if not todo:
            return RunReport(path, layout.n_chunks, skipped, 0, 0, time.perf_counter() - began)
        job = _Job(spec, str(path), table, contrasts, list(layout.layers), time.time_ns() // 1000)
        with _client(client, n_workers) as active, _shipped_model(active, spec, pickled):
            tasks = ((index, *layout.bounds(index)) for index in todo)
            _run_tasks(active, job, tasks, layout.n_chunks, skipped, progress)
        done = int((zstore.completed(path) == job.run_id).sum())
    return RunReport(path, layout.n_chunks, skipped, done, job.run_id, time.perf_counter() - began)


@dataclass(frozen=True)
class _Job:
    """What every chunk task of one call shares."""

    spec: EngineSpec
    store: str
    table: SampleTable
    contrasts: tuple
    layers: list[str]
    run_id: int

    def submit(self, client: Any, index: int, start: int, stop: int) -> Any:
        """Submit chunk ``index``; its batch travels inside the task (not scattered), so a task
        whose worker dies is rerun elsewhere."""
        x, target = self.table.batch(start, stop)
        size = max(10 * 2**20, 2 * (x.nbytes + target.nbytes))  # a chunk is as big as it is
        with dask.config.set({"distributed.admin.large-graph-warning-threshold": size}):
            return client.submit(
                explain_chunk,
                self.spec,
                self.store,
                index,
                start,
                x,
                target,
                self.contrasts,
                self.layers,
                self.run_id,
                pure=False,
                key=f"explain-chunk-{index}-{self.run_id}",
            )


def _run_tasks(
    client: Any,
    job: _Job,
    tasks: Iterator[tuple[int, int, int]],
    n_chunks: int,
    skipped: int,
    progress: bool,
) -> None:
    """Keep two tasks per worker thread in flight until every chunk is done."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    window = 2 * max(1, sum(client.nthreads().values()))
    queue = as_completed([job.submit(client, *task) for task in itertools.islice(tasks, window)])
    bar = tqdm(
        total=n_chunks, initial=skipped, unit="chunk", desc="explain_dataset", disable=not progress
    )
    try:
        for future in queue:
            future.result()  # re-raises a worker's error here
            bar.update(1)
            follow = next(tasks, None)
            if follow is not None:
                queue.add(job.submit(client, *follow))
    finally:  # also on Ctrl-C: finished chunks stay, unfinished ones are redone next time
        bar.close()
        client.cancel(list(queue.futures))


@contextlib.contextmanager
def _shipped_model(client: Any, spec: EngineSpec, pickled: bytes | None) -> Iterator[None]:
    """Install a model that is not loaded by name on every worker, for the call's duration."""
    if pickled is None:
        yield
        return
    assert spec.shipped is not None
    plugin = ModelPlugin(spec.shipped, pickled)
    client.register_plugin(plugin)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # the cluster may be gone already
            client.unregister_worker_plugin(plugin.name)


@contextlib.contextmanager
def _client(client: Any, n_workers: int | None) -> Iterator[Any]:
    if client is not None:
        yield client
        return
    from distributed import Client

    with local_cluster(n_workers) as cluster, Client(cluster) as own:
        yield own


def _unpack(bundle: Any, input_bounds: Any) -> tuple[torch.nn.Module, str | None, Any, Any]:
    if isinstance(bundle, torch.nn.Module):
        return bundle, None, None, input_bounds
    if not isinstance(getattr(bundle, "model", None), torch.nn.Module):
        raise InputError(
            f"bundle must be a cw.ModelBundle or a torch.nn.Module; got {type(bundle).__name__}. "
            "For a shipped model pass cw.load_model(name), e.g. cw.load_model('shapes')"
        )
    bounds = bundle.input_bounds if input_bounds is None else input_bounds
    return bundle.model, getattr(bundle, "name", None), bundle.class_names, bounds


def _methods(methods: Any) -> tuple:
    items = (methods,) if isinstance(methods, (str, int)) else tuple(methods)
    for item in items:
        if isinstance(item, bool) or not (item in CONTRASTS or isinstance(item, int)):
            raise ConfigError(
                f"unknown method {item!r}; use any of {', '.join(CONTRASTS)} or a class index "
                "(the target rather than that class)"
            )
    if not items or len(set(map(_label, items))) != len(items):
        raise ConfigError(f"methods must be a non-empty list without repeats; got {methods!r}")
    return items


def _label(method: str | int) -> str:
    return method if isinstance(method, str) else f"rather_than_{method}"


def _probe(
    model: torch.nn.Module,
    rules: Any,
    bounds: Any,
    dual_seed: str,
    table: SampleTable,
    contrasts: tuple,
    layers: Any,
) -> tuple[int, dict[str, int]]:
    """Explain the first sample here, to fail early; return the classes and channels per layer.

    Every target is checked against the number of classes, and every method is tried once.
    """
    engine = RelevanceEngine(model, rules=rules, input_bounds=bounds, keep_denominators=False)
    device = next(model.parameters(), torch.empty(0)).device
    x = torch.from_numpy(table.batch(0, 1)[0]).to(device)
    capture = "all" if layers is None else layers
    out = engine.run(
        x, 0, contrast="lrp", capture=capture if isinstance(capture, str) else list(capture)
    )
    n_classes = int(out.logits.shape[1])
    bad = (table.target < 0) | (table.target >= n_classes)
    if bad.any():
        raise InputError(
            f"target {int(table.target[bad][0])} is out of range for a model with {n_classes} "
            f"classes (sample {int(np.flatnonzero(bad)[0])}); use class indices 0..{n_classes - 1}"
        )
    for contrast in contrasts:
        if not isinstance(contrast, str) and (table.target == contrast).any():
            raise ConfigError(
                f"method {contrast} contrasts the target with class {contrast}, but sample "
                f"{int(np.flatnonzero(table.target == contrast)[0])} has that target; leave "
                f"class {contrast}'s samples out of data or use another method"
            )
        if contrast != "lrp":
            engine.run(x, int(table.target[0]), contrast=contrast, dual_seed=dual_seed)
    return n_classes, {
        name: int(neurons_first(cap.relevance, out.axes.get(name), lead=2).shape[2])
        for name, cap in out.layers.items()
    }


def _config(spec: EngineSpec, model: str, layout: zstore.Layout, table: SampleTable) -> dict:
    """The settings that decide the store's content; a resumed run must match them exactly."""
    return {
        "model": model,
        "model_fingerprint": spec.fingerprint,
        "methods": list(layout.methods),
        "rules": spec.rules if isinstance(spec.rules, str) else repr(spec.rules),
        "input_bounds": _jsonable(spec.input_bounds),
        "dual_seed": spec.dual_seed,
        "layers": list(layout.layers),
        "data_fingerprint": table.fingerprint(),
        "n_samples": layout.n_samples,
        "chunk": layout.chunk,
        "class_names": list(layout.class_names),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _say(progress: bool, message: str) -> None:
    log.info(message)
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(message)
