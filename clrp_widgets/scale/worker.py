"""What runs on a dask worker: a per-process engine cache and the chunk task.

Each worker process builds its :class:`RelevanceEngine` once per model and keeps it in
``_ENGINES``. A shipped model is loaded on the worker by name (and checked against the client's
weight fingerprint); any other model arrives pickled, once per worker, through a
:class:`ModelPlugin`, which dask also installs on workers that join or restart mid-run.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

import cloudpickle
import numpy as np
import torch
import zarr
import zarr.api.asynchronous
from distributed.diagnostics.plugin import WorkerPlugin
from zarr.core.sync import sync as zarr_sync

from clrp_widgets.engine import RelevanceEngine
from clrp_widgets.engine.axes import neurons_first
from clrp_widgets.engine.errors import ConfigError
from clrp_widgets.scale.store import KINDS, SUMMARIES, array

_ENGINES: dict[tuple, RelevanceEngine] = {}
_MAX_ENGINES = 2
_PICKLED: dict[str, bytes] = {}  # shipped hash -> pickled model, put here by ModelPlugin
MODEL_LOADS: Counter = Counter()  # spec key -> number of engine builds in this process


@dataclass(frozen=True)
class EngineSpec:
    """How a worker finds the model and builds its engine.

    ``name`` is set for a model that ``cw.load_model(name)`` gives on every machine; otherwise
    the model travels pickled, and ``shipped`` is the SHA-256 of those bytes. ``fingerprint``
    identifies the weights either way.
    """

    name: str | None
    shipped: str | None
    fingerprint: str
    rules: Any
    input_bounds: Any
    dual_seed: str

    @property
    def key(self) -> tuple:
        return (
            self.name,
            self.shipped,
            self.fingerprint,
            repr(self.rules),
            repr(self.input_bounds),
        )


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of the model's class name and every state-dict entry (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(type(model).__qualname__.encode())
    for name, value in model.state_dict().items():
        tensor = value.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


class ModelPlugin(WorkerPlugin):
    """Hands a pickled model to every worker once (also to workers started later)."""

    idempotent = True

    def __init__(self, shipped: str, pickled: bytes) -> None:
        self.shipped = shipped
        self.pickled = pickled
        self.name = f"clrp-widgets-model-{shipped[:16]}"

    def setup(self, worker: Any) -> None:
        _PICKLED[self.shipped] = self.pickled

    def teardown(self, worker: Any) -> None:
        _PICKLED.pop(self.shipped, None)


def engine_for(spec: EngineSpec) -> RelevanceEngine:
    """Return this process's engine for ``spec``, building (and loading) it only the first time."""
    engine = _ENGINES.get(spec.key)
    if engine is not None:
        return engine
    if spec.shipped is None:
        model = _load_named(spec)
    elif spec.shipped in _PICKLED:
        model = cloudpickle.loads(_PICKLED[spec.shipped])
    else:
        raise ConfigError(
            "this worker has not received the model; pass the dask Client to "
            "explain_dataset (it installs the model on every worker with a plugin)"
        )
    engine = RelevanceEngine(
        model, rules=spec.rules, input_bounds=spec.input_bounds, keep_denominators=False
    )
    while len(_ENGINES) >= _MAX_ENGINES:
        _ENGINES.pop(next(iter(_ENGINES)))
    _ENGINES[spec.key] = engine
    MODEL_LOADS[spec.key] += 1
    return engine


def _load_named(spec: EngineSpec) -> torch.nn.Module:
    from clrp_widgets.models.loaders import load_model

    assert spec.name is not None
    model = load_model(spec.name).model
    if model_fingerprint(model) != spec.fingerprint:
        raise ConfigError(
            f"the model {spec.name!r} that this worker loads has other weights than the bundle "
            "you passed (changed or fine-tuned?). Rename the bundle, e.g. "
            "dataclasses.replace(bundle, name='my-model'), so its own weights are shipped"
        )
    return model


def model_loads() -> dict[str, int]:
    """Engine builds per model in this process (``client.run(model_loads)`` asks every worker).

    Keys: the model name, or ``shipped-<hash of the pickled model>``.
    """
    return {key[0] or f"shipped-{key[1][:12]}": count for key, count in MODEL_LOADS.items()}


def explain(
    engine: RelevanceEngine,
    x: torch.Tensor,
    target: torch.Tensor,
    methods: tuple,
    layers: list[str],
    dual_seed: str,
) -> dict[str, np.ndarray]:
    """Explain one batch with every method; return the arrays the store holds for it.

    Keys: ``logits`` (sample, class), ``heatmap`` (contrast, kind, sample, y, x),
    ``layer:<name>`` (contrast, kind, sample, channel) and the activation summaries
    ``max:<name>`` and ``mean:<name>`` (sample, channel), the maximum and mean over space of
    each channel's activation. For ``"lrp"`` the dual is zero and the contrast equals the
    target map.
    """
    heatmaps: list[torch.Tensor] = []
    neurons: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    logits = None
    for method in methods:
        if method == "lrp":
            out = engine.run(x, target, contrast="lrp", kinds=("target",), capture=layers)
        else:
            out = engine.run(
                x, target, contrast=method, kinds=KINDS, capture=layers, dual_seed=dual_seed
            )
        logits = out.logits if logits is None else logits
        heatmaps.append(_all_kinds(out.input.sum(dim=2)))
        for name in layers:
            # neurons on axis 2 (hidden units / heads of token layers, as in the result tree)
            relevance = neurons_first(out.layers[name].relevance, out.axes.get(name), lead=2)
            if relevance.ndim > 3:  # (kind, sample, channel, y, x): sum over space
                relevance = relevance.flatten(3).sum(dim=3)
            neurons[name].append(_all_kinds(relevance))
    assert logits is not None
    arrays = {"logits": _numpy(logits), "heatmap": np.stack([_numpy(h) for h in heatmaps])}
    for name, parts in neurons.items():
        arrays[f"layer:{name}"] = np.stack([_numpy(p) for p in parts])
        activation = neurons_first(out.layers[name].activation, out.axes.get(name))
        arrays.update(activation_summaries(name, activation))
    return arrays


def activation_summaries(name: str, activation: torch.Tensor) -> dict[str, np.ndarray]:
    """``max:<name>`` and ``mean:<name>`` (sample, channel): each channel's activation maximum
    and mean over space (a linear layer's unit: its value, twice)."""
    flat = activation.detach().flatten(2) if activation.ndim > 2 else activation[..., None]
    return {f"max:{name}": _numpy(flat.amax(dim=2)), f"mean:{name}": _numpy(flat.mean(dim=2))}


def _all_kinds(values: torch.Tensor) -> torch.Tensor:
    if len(values) == len(KINDS):
        return values
    return torch.stack([values[0], torch.zeros_like(values[0]), values[0]])


def _numpy(values: torch.Tensor) -> np.ndarray:
    return values.detach().to("cpu", torch.float32).numpy()


def explain_chunk(
    spec: EngineSpec,
    store: str,
    index: int,
    start: int,
    x: np.ndarray,
    target: np.ndarray,
    methods: tuple,
    layers: list[str],
    run_id: int,
) -> bool:
    """The dask task: explain samples ``start:start+len(x)``, write them, then mark chunk done.

    The completion marker (``completed_by[index] = run_id``) is written last, so a chunk whose
    marker is set is complete; a task killed earlier leaves it unset and the chunk is redone.
    A task whose chunk is already marked (dask reruns tasks whose results died with their
    worker) returns False without recomputing; otherwise True.
    """
    group = zarr.open_group(store, mode="r+")
    if array(group, "completed_by")[index] != 0:
        return False
    engine = engine_for(spec)
    device = next(engine.model.parameters(), torch.empty(0)).device
    batch, classes = torch.from_numpy(x).to(device), torch.from_numpy(target).to(device)
    arrays = explain(engine, batch, classes, methods, layers, spec.dual_seed)
    rows = slice(start, start + len(x))
    writes: dict[str, tuple[tuple[slice, ...], np.ndarray]] = {
        "logits": ((rows,), arrays["logits"])
    }
    writes["input/heatmap"] = ((slice(None), slice(None), rows), arrays["heatmap"])
    for name in layers:
        path = f"layers/{name}/neuron_relevance"
        writes[path] = ((slice(None), slice(None), rows), arrays[f"layer:{name}"])
        for stat in SUMMARIES:  # activation summaries (store format 2)
            writes[f"layers/{name}/activation_{stat}"] = ((rows,), arrays[f"{stat}:{name}"])
    zarr_sync(_write_all(store, writes))  # all at once: about 3x faster than one by one
    array(group, "completed_by")[index] = run_id  # last, once every array above is written
    return True


async def _write_all(store: str, writes: dict[str, tuple[tuple, np.ndarray]]) -> None:
    group = await zarr.api.asynchronous.open_group(store, mode="r+")
    found = await asyncio.gather(*(group.getitem(path) for path in writes))
    arrays = [a for a in found if isinstance(a, zarr.AsyncArray)]
    pairs = zip(arrays, writes.values(), strict=True)
    await asyncio.gather(*(a.setitem(where, values) for a, (where, values) in pairs))
