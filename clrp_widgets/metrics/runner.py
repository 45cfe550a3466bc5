"""``cw.evaluate``: every method × every metric on a data set, as one ``xarray.Dataset``."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from clrp_widgets.engine.errors import ConfigError, InputError
from clrp_widgets.metrics.base import Metric
from clrp_widgets.metrics.data import EvalData, normaliser
from clrp_widgets.metrics.localisation import PointingGame, StrictPointingGame
from clrp_widgets.metrics.methods import method_maps
from clrp_widgets.metrics.names import DEFAULT_METHODS, DEFAULT_METRICS, METHODS
from clrp_widgets.metrics.perturbation import Ablation, RegionPerturbation
from clrp_widgets.metrics.sensitivity import ClassSensitivity

METRICS: dict[str, Any] = {
    "pointing_game": PointingGame,
    "strict_pointing_game": StrictPointingGame,
    "ablation": Ablation,
    "region_perturbation": lambda: RegionPerturbation("morf"),
    "region_perturbation_lerf": lambda: RegionPerturbation("lerf"),
    "class_sensitivity": ClassSensitivity,
    "class_sensitivity_ssim": lambda: ClassSensitivity("ssim"),
}


def make_metric(spec: str | Metric) -> tuple[str, Metric]:
    """A (name, metric) pair from a registry name or a metric instance (named by its class)."""
    if isinstance(spec, Metric):
        name = spec.name
        if isinstance(spec, RegionPerturbation) and spec.order == "lerf":
            name += "_lerf"
        if isinstance(spec, ClassSensitivity) and spec.similarity == "ssim":
            name += "_ssim"
        return name, spec
    if spec not in METRICS:
        raise ConfigError(f"unknown metric {spec!r}; choose from {', '.join(METRICS)}.")
    return spec, METRICS[spec]()


def as_eval_data(data: Any, seed: int = 0, preprocess: Any = None) -> EvalData:
    """EvalData from EvalData, ``cw.scenes`` output (or its ``images, labels, boxes`` tuple,
    whose boxes carry the ``object_class`` coordinate), or an int n: that many shipped scenes.
    ``preprocess`` (e.g. a normaliser) maps scene images to model input."""
    if isinstance(data, EvalData):
        return data
    if isinstance(data, (int, np.integer)):
        from clrp_widgets.models.scenes import scenes

        data = scenes(int(data), seed=seed)
    if hasattr(data, "object_class") and hasattr(data, "tensor"):
        return EvalData.from_scenes(data, preprocess)
    if (
        isinstance(data, tuple)
        and len(data) == 3
        and "object_class" in getattr(data[2], "coords", {})
    ):
        images, labels, boxes = data
        x = torch.from_numpy(np.asarray(getattr(images, "values", images), dtype=np.float32))
        coords = getattr(labels, "coords", {})
        return EvalData(
            images=preprocess(x) if preprocess is not None else x,
            labels=np.asarray(getattr(labels, "values", labels)) > 0,
            boxes=np.asarray(boxes.values, dtype=np.int64),
            object_class=np.asarray(boxes["object_class"].values, dtype=np.int64),
            ids=tuple(f"scene-{i}" for i in range(len(x))),
            class_names=tuple(coords["class_name"].values.tolist())
            if "class_name" in coords
            else (),
        )
    raise InputError(
        f"data must be an EvalData, the output of cw.scenes(...) or an int; got {type(data)}. "
        "Load folders with clrp_widgets.metrics.loaders.load_imagenet_folder / load_voc07."
    )


def default_bounds(images: torch.Tensor) -> tuple[float, float] | None:
    """Input bounds when neither the bundle nor the caller gives any: (0, 1) for images in
    [0, 1]; otherwise None, the engine's default (the authors' ImageNet bounds)."""
    return (0.0, 1.0) if images.min() >= 0 and images.max() <= 1 else None


def _items(data: EvalData, targets: Any, model: torch.nn.Module, bs: int) -> np.ndarray:
    """(M, 2) rows of (image index, target class): the images' items in image order."""
    if isinstance(targets, str) and targets == "present":
        return np.argwhere(data.labels)
    if isinstance(targets, str) and targets == "predicted":
        device = next(model.parameters()).device
        with torch.no_grad():
            top = [
                model(data.images[s : s + bs].to(device)).argmax(1).cpu()
                for s in range(0, len(data), bs)
            ]
        return np.stack([np.arange(len(data)), torch.cat(top).numpy()], axis=1)
    if isinstance(targets, str):
        raise ConfigError(
            f"targets must be 'present', 'predicted' or one int per image; got {targets!r}."
        )
    t = np.asarray(targets, dtype=np.int64).reshape(-1)
    if t.size != len(data):
        raise InputError(f"got {t.size} targets for {len(data)} images; give one per image.")
    return np.stack([np.arange(len(data)), t], axis=1)


def _pairs(items: np.ndarray) -> np.ndarray:
    """(P, 2) item-index pairs (a, b), a < b, of the items that share an image."""
    out = []
    bounds = np.flatnonzero(np.diff(items[:, 0], prepend=-1, append=-1))
    for lo, hi in itertools.pairwise(bounds):
        out += [(a, b) for a in range(lo, hi) for b in range(a + 1, hi)]
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def evaluate(
    bundle: Any,
    data: Any = 500,
    methods: Sequence[str] = DEFAULT_METHODS,
    metrics: Sequence[str | Metric] = DEFAULT_METRICS,
    targets: Any = "present",
    batch_size: int = 32,
    progress: bool = True,
    *,
    input_bounds: Any = None,
    seed: int = 0,
) -> xr.Dataset:
    """Score every method with every metric, keeping the per-image values.

    Parameters
    ----------
    bundle
        A ``cw.ModelBundle`` (model, class names, input bounds, rules preset) or a torch
        module. Without bounds from the bundle or ``input_bounds``, images in [0, 1] use (0, 1),
        others the engine's default. The relevance methods use the bundle's ``rules`` and
        ``overrides`` (``"paper"`` for a module).
    data
        ``cw.scenes(...)`` output, an :class:`EvalData` (see ``metrics.loaders``), or an int n:
        the first n shipped scenes of ``seed``. Scenes pass through the bundle's ``Preprocess``
        normalisation (not its resize or crop, so the boxes stay exact).
    methods
        Names from ``lrp, clrp1, clrp2, sglrp, gradient, gradient_x_input, deconvnet,
        guided_backprop, gradcam`` (see ``metrics.methods`` for how each becomes one map).
    metrics
        Registry names (``pointing_game, strict_pointing_game, ablation, region_perturbation,
        region_perturbation_lerf, class_sensitivity, class_sensitivity_ssim``) or metric
        instances.
    targets
        ``"present"``: every present class of every image is explained (the discriminative
        setting; class sensitivity compares each pair of them); ``"predicted"``: the top class;
        or one int per image.
    batch_size
        Images per batch (all items of an image stay in one batch).
    progress
        Show a tqdm.auto progress bar.

    Returns
    -------
    xarray.Dataset
        ``score``, ``stderr`` and ``count`` over (method, metric), coordinate
        ``higher_is_better`` on ``metric``; one variable per metric with the per-item values
        (method, item), per pair (method, pair) for class sensitivity, and
        ``<name>_curve`` (method, item, step) for region perturbation. Item coordinates:
        ``image``, ``image_id``, ``target``, ``target_name``; pair coordinates ``pair_image``,
        ``class_a``, ``class_b``. Deterministic for equal inputs.
    """
    run = _Run(bundle, data, methods, metrics, targets, batch_size, input_bounds, seed)
    starts = range(0, len(run.data), batch_size)
    with tqdm(total=len(methods) * len(starts), disable=not progress, desc="evaluate") as bar:
        for mi, method in enumerate(run.methods):
            for s in starts:
                run.score_batch(mi, method, s, s + batch_size)
                bar.update(1)
    return run.dataset()


class _Run:
    """The state of one ``evaluate`` call: data, items, pairs and the value arrays it fills."""

    def __init__(
        self,
        bundle: Any,
        data: Any,
        methods: Sequence[str],
        metrics: Sequence[str | Metric],
        targets: Any,
        batch_size: int,
        input_bounds: Any,
        seed: int,
    ):
        self.model = getattr(bundle, "model", bundle)
        if not isinstance(self.model, torch.nn.Module):
            raise InputError(
                f"bundle must be a cw.ModelBundle or a torch module; got {type(bundle)}."
            )
        self.bounds = (
            input_bounds if input_bounds is not None else getattr(bundle, "input_bounds", None)
        )
        self.rules = getattr(bundle, "rules", None) or "paper"
        self.overrides = getattr(bundle, "overrides", None)
        self.class_names = tuple(getattr(bundle, "class_names", None) or ())
        self.model_name = str(getattr(bundle, "name", type(self.model).__name__))
        self.methods = list(methods)
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ConfigError(f"unknown methods {bad}; choose from {', '.join(METHODS)}.")
        self.metrics = [make_metric(m) for m in metrics]
        names = [n for n, _ in self.metrics]
        if len(set(names)) != len(names):
            raise ConfigError(f"metric names repeat: {names}; give each metric once.")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1; got {batch_size}.")
        self.data = as_eval_data(data, seed, normaliser(getattr(bundle, "preprocess", None)))
        if self.bounds is None:
            self.bounds = default_bounds(self.data.images)
        self.class_names = self.class_names or self.data.class_names
        self.device = next(self.model.parameters()).device
        self.targets = targets
        self.items = _items(self.data, targets, self.model, batch_size)
        self.pairs = _pairs(self.items)
        self.mean = self.data.images.mean(dim=(0, 2, 3))
        n_m = len(self.methods)
        self.values = {
            n: np.full((n_m, len(self.pairs) if m.unit == "pair" else len(self.items)), np.nan)
            for n, m in self.metrics
        }
        self.curves: dict[str, np.ndarray] = {}

    def score_batch(self, mi: int, method: str, start: int, stop: int) -> None:
        """Compute the maps of images [start, stop) with ``method`` and score them."""
        items, pairs = self.items, self.pairs
        sel = np.flatnonzero((items[:, 0] >= start) & (items[:, 0] < stop))
        if not sel.size:
            return
        x = self.data.images[torch.as_tensor(items[sel, 0])].to(self.device)
        t = torch.as_tensor(items[sel, 1]).to(self.device)
        maps = method_maps(method, self.model, x, t, self.bounds, self.rules, self.overrides)
        psel = np.flatnonzero(np.isin(pairs[:, 0], sel))
        local = {int(g): k for k, g in enumerate(sel)}
        for name, metric in self.metrics:
            out = self.values[name][mi]
            if isinstance(metric, ClassSensitivity):
                if psel.size:
                    a = maps[[local[int(p)] for p in pairs[psel, 0]]]
                    b = maps[[local[int(p)] for p in pairs[psel, 1]]]
                    out[psel] = metric(a, b)
            elif isinstance(metric, PointingGame):
                out[sel] = metric(maps, [self.data.region(int(i), int(c)) for i, c in items[sel]])
            elif isinstance(metric, RegionPerturbation):
                c = metric.curves(self.model, x, maps, t, self.mean)
                shape = (len(self.methods), len(items), c.shape[1])
                self.curves.setdefault(name, np.full(shape, np.nan))[mi, sel] = c
                out[sel] = metric.aopc(c)
            elif isinstance(metric, Ablation):
                out[sel] = metric(self.model, x, maps, t, self.mean)
            else:
                raise ConfigError(
                    f"the runner cannot feed {type(metric).__name__}; call it directly."
                )

    def dataset(self) -> xr.Dataset:
        """Collect scores and per-item values into the result Dataset."""
        items, pairs = self.items, self.pairs
        shape = (len(self.methods), len(self.metrics))
        score, stderr = np.full(shape, np.nan), np.full(shape, np.nan)
        count = np.zeros(shape, dtype=np.int64)
        for j, (name, metric) in enumerate(self.metrics):
            for i in range(len(self.methods)):
                v = self.values[name][i]
                score[i, j] = metric.aggregate(v, items[:, 1] if metric.unit == "item" else None)
                finite = v[np.isfinite(v)]
                count[i, j] = finite.size
                if finite.size > 1:
                    stderr[i, j] = finite.std(ddof=1) / np.sqrt(finite.size)
        pm = ("method", "metric")
        data_vars: dict[str, Any] = {
            "score": (pm, score),
            "stderr": (pm, stderr),
            "count": (pm, count),
        }
        for name, metric in self.metrics:
            data_vars[name] = (("method", metric.unit), self.values[name])
            if name in self.curves:
                data_vars[f"{name}_curve"] = (("method", "item", "step"), self.curves[name])
        cn = self.class_names
        coords = {
            "method": self.methods,
            "metric": [n for n, _ in self.metrics],
            "higher_is_better": ("metric", [bool(m.higher_is_better) for _, m in self.metrics]),
            "image": ("item", items[:, 0]),
            "image_id": ("item", [self.data.ids[i] for i in items[:, 0]]),
            "target": ("item", items[:, 1]),
            "target_name": ("item", [cn[c] if c < len(cn) else str(c) for c in items[:, 1]]),
            "pair_image": ("pair", items[pairs[:, 0], 0]),
            "class_a": ("pair", items[pairs[:, 0], 1]),
            "class_b": ("pair", items[pairs[:, 1], 1]),
        }
        attrs = {
            "model": self.model_name,
            "n_images": len(self.data),
            "targets": self.targets if isinstance(self.targets, str) else "given",
            "input_bounds": repr(self.bounds),
            "rules": self.rules if isinstance(self.rules, str) else repr(self.rules),
            "metric_params": json.dumps({n: m.params() for n, m in self.metrics}),
        }
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)
