"""The object API: :class:`Explainer` captures every layer and returns labelled results."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from clrp_widgets import __version__
from clrp_widgets.engine import RelevanceEngine
from clrp_widgets.engine.baselines import BASELINES, baseline, last_conv_name
from clrp_widgets.engine.errors import ConfigError, InputError, LayerNotFoundError
from clrp_widgets.engine.ops import LINEAR_TYPES
from clrp_widgets.engine.seeds import CONTRASTS
from clrp_widgets.results import build_tree, encode_attrs
from clrp_widgets.results.tree import as_numpy, probabilities

if TYPE_CHECKING:
    import pandas as pd

Target = int | str | Sequence[int | str] | torch.Tensor


def _plain_bound(bound: Any) -> float | list[float]:
    values = torch.as_tensor(bound, dtype=torch.float64).flatten().tolist()
    return values[0] if torch.as_tensor(bound).dim() == 0 else values


def _describe_rules(rules: str | Mapping[Any, Any]) -> str | dict[str, str]:
    if isinstance(rules, str):
        return rules
    return {getattr(k, "__name__", str(k)): repr(v) for k, v in rules.items()}


class Explainer:
    """LRP, CLRP and baselines for one model, with every layer labelled as ``xarray`` results.

    Parameters
    ----------
    model_or_bundle : torch.nn.Module or ModelBundle
        A classifier returning logits, or a bundle (anything with ``.model``, ``.class_names``,
        ``.input_bounds`` and ``.name``) whose fields fill the defaults below.
    rules : str or mapping, optional
        A preset name (``"paper"``, ``"epsilon_plus"``, ...) or a mapping of layer types or
        module names to rules, as accepted by :class:`clrp_widgets.engine.RelevanceEngine`;
        default: the bundle's ``rules`` (``"attnlrp"`` for ``load_model("shapes_vit")``), else
        ``"paper"``.
    input_bounds : (low, high), optional
        Lowest and highest input values for the first layer's z^B rule, scalars or per-channel
        tensors; default: the bundle's bounds, else the engine's default.
    class_names : sequence of str, optional
        One name per class; default: the bundle's names, else the indices as strings.
    canonizers : str
        Passed to the engine (``"auto"`` merges BatchNorm into the preceding layer).
    overrides : mapping, optional
        ``{module path, op node name, layer type or torch function: Rule}`` that extends the
        preset rather than replacing it, e.g. ``{"features.1.0.stochastic_depth": Pass()}``.
        Default: the bundle's ``overrides`` (when ``rules`` is the bundle's too), else none.
    output : str, int or callable, optional
        Where the class scores are in the model's output when it is not a tensor (a Hugging
        Face ``ModelOutput``'s ``.logits``, a dict or tuple are found without it): a key or
        attribute name, an index or a callable. Default: the bundle's ``output``, else None.

    Notes
    -----
    Wherever ``x`` is taken it may be a batch (N, C, H, W) or a single image (C, H, W), to which
    a batch dimension is added (the results then have ``sample`` of length 1). ``target`` may be
    an int, a class name, or a sequence with one int or name per sample.

    Examples
    --------
    >>> ex = Explainer(cw.load_model("shapes"))  # doctest: +SKIP
    >>> tree = ex.explain(image, "disk")  # doctest: +SKIP
    >>> tree["input"].heatmap.sel(kind="contrast").clip(min=0)  # doctest: +SKIP
    """

    def __init__(
        self,
        model_or_bundle: Any,
        rules: str | Mapping[Any, Any] | None = None,
        input_bounds: tuple[Any, Any] | None = None,
        class_names: Sequence[str] | None = None,
        canonizers: str = "auto",
        overrides: Mapping[Any, Any] | None = None,
        output: Any = None,
    ) -> None:
        bundle = None if isinstance(model_or_bundle, nn.Module) else model_or_bundle
        model = model_or_bundle if bundle is None else getattr(bundle, "model", None)
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"Explainer needs a torch.nn.Module or a ModelBundle, got "
                f"{type(model_or_bundle).__name__}; pass e.g. cw.load_model('shapes')."
            )
        if input_bounds is None and bundle is not None:
            input_bounds = getattr(bundle, "input_bounds", None)
        if class_names is None and bundle is not None:
            class_names = getattr(bundle, "class_names", None)
        if output is None and bundle is not None:
            output = getattr(bundle, "output", None)
        if rules is None:
            rules = getattr(bundle, "rules", None) or "paper"
            if overrides is None and bundle is not None:
                overrides = getattr(bundle, "overrides", None)
        self.model = model
        self.class_names = None if class_names is None else [str(n) for n in class_names]
        self.rules = rules
        self.overrides = dict(overrides) if overrides else {}
        self.canonizers = canonizers
        self.output = output
        self.model_name = str(getattr(bundle, "name", None) or type(model).__name__)
        self.output_activation = str(getattr(bundle, "output_activation", "softmax"))
        self.engine = RelevanceEngine(
            model,
            rules=rules,
            input_bounds=input_bounds,
            canonizers=canonizers,
            overrides=overrides,
            output=output,
        )
        self.input_bounds = self.engine.input_bounds

    def with_rules(self, rules: str | Mapping[Any, Any]) -> Explainer:
        """A new Explainer of the same model with ``rules``, keeping every other setting
        (input bounds, class names, canonizers, ``overrides``, ``output``, model name and
        output activation); what the Explorer's rules picker builds."""
        twin = Explainer(
            self.model,
            rules=rules,
            input_bounds=self.input_bounds if self.engine.bounds_given else None,
            class_names=self.class_names,
            canonizers=self.canonizers,
            overrides=self.overrides or None,
            output=self.output,
        )
        twin.model_name = self.model_name
        twin.output_activation = self.output_activation
        return twin

    @property
    def layer_names(self) -> list[str]:
        """Names of the capturable layers (Conv2d, Linear, pooling modules and op-level layers
        such as ``"layer1.0:add"``), in forward order; op-level ones appear after the first call."""
        return list(self.engine.layer_names())

    # ----- helpers

    @staticmethod
    def _batch(x: Any) -> Any:
        return x.unsqueeze(0) if isinstance(x, torch.Tensor) and x.dim() == 3 else x

    def _class_index(self, target: Any) -> Any:
        if isinstance(target, numbers.Integral) and not isinstance(target, bool):
            return int(target)  # numpy integers too
        if not isinstance(target, str):
            return target  # the engine refuses it with a clear message
        names = self.class_names or []
        if target in names:
            return names.index(target)
        close = difflib.get_close_matches(target, names, n=3)
        hint = f" Closest: {', '.join(map(repr, close))}." if close else ""
        known = "" if names else " This Explainer has no class names; pass class_names=[...]."
        raise InputError(f"unknown class name {target!r}.{hint}{known} Or pass the class index.")

    def _contrast(self, contrast: Any) -> Any:
        """A class name B becomes its index; method names and anything else go to the engine."""
        names = self.class_names or []
        if isinstance(contrast, str) and contrast.lower() not in CONTRASTS and contrast in names:
            return names.index(contrast)
        return contrast

    def _targets(self, target: Target) -> Any:
        if isinstance(target, str):
            return self._class_index(target)
        if isinstance(target, Sequence):
            return [self._class_index(t) for t in target]
        return target

    @staticmethod
    def _target_ids(targets: Any, n: int) -> np.ndarray:
        """Per-sample target indices (N,) as int64, for a ``target`` coordinate."""
        if isinstance(targets, torch.Tensor):
            targets = targets.detach().cpu().numpy()
        return np.broadcast_to(np.asarray(targets, dtype=np.int64), (n,))

    def _attrs(self, **extra: Any) -> dict[str, Any]:
        extra = {"overrides": _describe_rules(self.overrides), **extra} if self.overrides else extra
        return {
            "rules": _describe_rules(self.rules),
            "input_bounds": [_plain_bound(b) for b in self.input_bounds],
            "model": self.model_name,
            "version": __version__,
            **extra,
        }

    def _tree(self, output: Any, **attrs: Any) -> xr.DataTree:
        return build_tree(
            output,
            class_names=self.class_names,
            attrs=self._attrs(**attrs),
            output_activation=self.output_activation,
        )

    # ----- public API

    def explain(
        self,
        x: torch.Tensor,
        target: Target,
        contrast: str | int = "clrp1",
        layers: str | Sequence[str] | None = "all",
        kinds: Sequence[str] | None = None,
        dual_seed: str = "uniform",
    ) -> xr.DataTree:
        """Explain the decision for ``target``, capturing relevance at every requested layer.

        Parameters
        ----------
        x : torch.Tensor
            (N, C, H, W), or one image (C, H, W).
        target : int, str or sequence
            Class index or name, one for all samples or one per sample.
        contrast : str or int
            ``"lrp"``, ``"clrp1"``, ``"clrp2"``, ``"sglrp"``, or a class index/name B
            ("target rather than B").
        layers : "all", sequence of str or None
            Layers to capture (``"all"``: every name in :attr:`layer_names`; None: none).
        kinds : sequence of str, optional
            Subset of ``("target", "dual", "contrast")``; default: all three for contrasts,
            ``("target",)`` for ``"lrp"``. ``contrast`` is target − dual, *not* clipped.
        dual_seed : str
            CLRP1's dual: ``"uniform"`` (the paper) or ``"logits"`` (the authors' code).

        Returns
        -------
        xarray.DataTree
            The result tree of DESIGN §3 (see :func:`clrp_widgets.results.build_tree`).
        """
        contrast = self._contrast(contrast)
        if kinds is None:
            kinds = ("target",) if contrast == "lrp" else ("target", "dual", "contrast")
        capture = None if layers is None or (not isinstance(layers, str) and not layers) else layers
        output = self.engine.run(
            self._batch(x),
            self._targets(target),
            contrast=contrast,
            kinds=tuple(kinds),
            capture=capture if capture is None or isinstance(capture, str) else list(capture),
            dual_seed=dual_seed,
        )
        is_lrp = contrast == "lrp"
        return self._tree(
            output,
            method="lrp" if is_lrp else "clrp",
            contrast=contrast,
            dual_seed=None if is_lrp else dual_seed,
        )

    def neuron(
        self,
        x: torch.Tensor,
        layer: str,
        channel: int,
        contrast: str | int | None = "layer",
        layers: str | Sequence[str] | None = "all",
    ) -> xr.DataTree:
        """The paper's neuron explanation: relevance of one channel's activation at ``layer``.

        Parameters
        ----------
        x : torch.Tensor
            (N, C, H, W), or one image (C, H, W).
        layer : str
            A name from :attr:`layer_names`.
        channel : int
            The channel (or unit, or head) whose activation seeds the explanation (the
            ``channel`` of :meth:`explain`'s tree: the neuron axis, not the token axis).
        contrast : "layer", int or None
            ``"layer"``: the dual spreads the same total over the layer's other channels; an int:
            that other channel is the dual; None: plain LRP of the neuron (kind "target" only).
        layers : "all", sequence of str or None
            Layers to capture, as in :meth:`explain`.

        Returns
        -------
        xarray.DataTree
            Same schema as :meth:`explain`; root attrs ``method="neuron"``, ``layer``,
            ``channel``; the ``target`` coordinate holds ``channel`` for every sample, and only
            layers up to ``layer`` are captured.
        """
        kinds = ("target",) if contrast is None else ("target", "dual", "contrast")
        capture = None if layers is None or (not isinstance(layers, str) and not layers) else layers
        output = self.engine.neuron(
            self._batch(x),
            layer,
            channel,
            contrast=contrast,
            kinds=kinds,
            capture=capture if capture is None or isinstance(capture, str) else list(capture),
        )
        return self._tree(
            output,
            method="neuron",
            contrast=contrast,
            dual_seed=None,
            layer=layer,
            channel=channel,
        )

    def conditional(
        self,
        x: torch.Tensor,
        target: Target,
        layer: str,
        channels: Sequence[int],
        contrast: str | int = "clrp1",
        dual_seed: str = "uniform",
    ) -> xr.DataArray:
        """Per-channel conditional heatmaps: the decision's relevance flowing through each channel.

        Parameters
        ----------
        x, target, contrast, dual_seed
            As in :meth:`explain` (the map is the contrast kind, unclipped; for ``"lrp"``
            the target kind).
        layer : str
            A name from :attr:`layer_names`.
        channels : sequence of int
            Channels of ``layer`` (its neurons: hidden units of a token or channels-last layer,
            heads of an attention layer, as ``channel`` in :meth:`explain`'s tree); all are
            computed in one batched backward pass.

        Returns
        -------
        xarray.DataArray
            ``conditional`` (channel, sample, y, x), summed over colour, with a ``channel``
            coordinate and ``target`` (sample).
        """
        x = self._batch(x)
        targets = self._targets(target)
        contrast = self._contrast(contrast)
        channels = [int(c) for c in channels]
        maps = self.engine.conditional(
            x, targets, layer, channels, contrast=contrast, dual_seed=dual_seed
        )
        heat = as_numpy(maps.sum(dim=2))
        return xr.DataArray(
            heat,
            dims=("channel", "sample", "y", "x"),
            coords={"channel": channels, "target": ("sample", self._target_ids(targets, len(x)))},
            name="conditional",
            attrs=encode_attrs(
                self._attrs(
                    method="conditional", contrast=contrast, dual_seed=dual_seed, layer=layer
                )
            ),
        )

    def decompose(
        self,
        x: torch.Tensor,
        target: Target,
        layer: str,
        channel: int,
        *,
        into: str | None = None,
        contrast: str | int = "clrp1",
        k: int | None = None,
    ) -> xr.DataArray:
        """How a neuron's conditional relevance splits over the channels of a layer below.

        The decision's relevance (``contrast``'s, unclipped) at ``layer`` is kept on ``channel``
        only and propagated down to ``into`` (CRP's conditional relevance); each of ``into``'s
        channels gets its part, summed over space. The parts add up to the neuron's relevance
        (``attrs["neuron_relevance"]``, its ``neuron_relevance`` in :meth:`explain`) up to the
        rules' conservation (``attrs["residual"]``).

        Parameters
        ----------
        x : torch.Tensor
            One image (C, H, W) or (1, C, H, W).
        target, contrast
            As in :meth:`explain`.
        layer, channel : str, int
            The neuron.
        into : str, optional
            A captured layer below ``layer``; default: the captured layer just below the nearest
            Conv/Linear layer at or below ``layer`` (where its channels are mixed; a pooling
            layer's channels are those of the convolution under it).
        k : int, optional
            Keep only the ``k`` channels with the largest parts, sorted descending; default: all
            channels, in channel order.

        Returns
        -------
        xarray.DataArray
            ``decomposition`` (channel) with attrs ``layer``, ``channel``, ``into``,
            ``target``, ``contrast``, ``neuron_relevance`` and ``residual`` (neuron relevance
            minus the sum over every channel of ``into``).
        """
        x = self._one(x, "decompose")
        targets = self._targets(target)
        contrast = self._contrast(contrast)
        at = self.engine.relevance_along(x, targets, [(layer, channel)], layer, contrast=contrast)
        neuron = float(at.sum(dtype=torch.float64))
        into = self.layer_below(layer) if into is None else into
        parts = self.engine.relevance_along(x, targets, [(layer, channel)], into, contrast=contrast)
        values = as_numpy(_per_channel(parts, self._feature_axis(into))[0]).astype(np.float32)
        channels = np.arange(len(values))
        if k is not None:
            if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
                raise InputError(f"k must be a positive int or None; got {k!r}.")
            channels = np.lexsort((channels, -values.astype(np.float64)))[: int(k)]
        return xr.DataArray(
            values[channels],
            dims=("channel",),
            coords={"channel": channels},
            name="decomposition",
            attrs=encode_attrs(
                self._attrs(
                    method="decompose",
                    contrast=contrast,
                    layer=layer,
                    channel=int(channel),
                    into=into,
                    target=int(self._target_ids(targets, 1)[0]),
                    neuron_relevance=neuron,
                    residual=neuron - float(values.sum(dtype=np.float64)),
                )
            ),
        )

    def attribution_graph(
        self,
        x: torch.Tensor,
        target: Target,
        layer: str,
        channel: int,
        depth: int = 2,
        k: int = 3,
        *,
        contrast: str | int = "clrp1",
    ) -> pd.DataFrame:
        """The neuron's top paths downward: at each level, the ``k`` sub-neurons with the most
        relevance conditioned on the whole path above them (CRP's attribution graph).

        Parameters
        ----------
        x, target, contrast
            As in :meth:`decompose` (one image).
        layer, channel : str, int
            The root neuron.
        depth : int
            Levels to descend (each goes to the default ``into`` of :meth:`decompose`; it stops
            early at the first layer).
        k : int
            Sub-neurons kept per neuron.

        Returns
        -------
        pandas.DataFrame
            One row per edge, parents before children: ``depth`` (1 = below the root),
            ``parent_layer``, ``parent_channel``, ``layer``, ``channel``, ``relevance`` (the
            child's relevance along the path root → … → parent → child) and ``share`` (that
            relevance over the parent's along its path), ``path`` (the ``layer:channel`` steps
            from the root). ``attrs``: root ``layer``, ``channel``, ``neuron_relevance``.
        """
        import pandas as pd

        x = self._one(x, "attribution_graph")
        targets = self._targets(target)
        contrast = self._contrast(contrast)
        for name, value in (("depth", depth), ("k", k)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise InputError(f"{name} must be a positive int; got {value!r}.")
        root = self.engine.relevance_along(x, targets, [(layer, channel)], layer, contrast=contrast)
        frontier = [([(layer, int(channel))], float(root.sum(dtype=torch.float64)))]
        rows = []
        for level in range(1, int(depth) + 1):
            following = []
            for path, total in frontier:
                below = self.layer_below(path[-1][0], missing_ok=True)
                if below is None:
                    continue
                at = self.engine.relevance_along(x, targets, path, below, contrast=contrast)
                parts = as_numpy(_per_channel(at, self._feature_axis(below))[0])
                for c in np.lexsort((np.arange(len(parts)), -parts))[: int(k)]:
                    step = [*path, (below, int(c))]
                    rows.append(
                        {
                            "depth": level,
                            "parent_layer": path[-1][0],
                            "parent_channel": path[-1][1],
                            "layer": below,
                            "channel": int(c),
                            "relevance": float(parts[c]),
                            "share": float(parts[c] / total) if total else float("nan"),
                            "path": " > ".join(f"{n}:{i}" for n, i in step),
                        }
                    )
                    following.append((step, float(parts[c])))
            frontier = following
        columns = ["depth", "parent_layer", "parent_channel", "layer", "channel"]
        table = pd.DataFrame(rows, columns=[*columns, "relevance", "share", "path"])
        table.attrs.update(
            layer=layer, channel=int(channel), neuron_relevance=float(root.sum(dtype=torch.float64))
        )
        return table

    def layer_below(self, layer: str, missing_ok: bool = False) -> Any:
        """The default ``into`` of :meth:`decompose`: the captured layer just below the nearest
        Conv/Linear layer at or below ``layer`` (None with ``missing_ok`` at the bottom)."""
        names = self.layer_names
        if layer not in names:
            raise LayerNotFoundError(
                f"unknown layer {layer!r}; pick one of {', '.join(names)} (Explainer.layer_names)."
            )
        modules = dict(self.model.named_modules())
        at = names.index(layer)
        while at > 0 and not isinstance(modules.get(names[at]), LINEAR_TYPES):
            at -= 1
        if at == 0:
            if missing_ok:
                return None
            raise InputError(
                f"layer {layer!r} has no captured layer below its weights; pick a higher layer."
            )
        return names[at - 1]

    def _feature_axis(self, layer: str) -> int:
        """The neuron axis of ``layer``'s output (1 for conv layers, the last for token ones)."""
        axes = self.engine.layer_axes().get(layer)
        return 1 if axes is None else axes.feature

    def _one(self, x: Any, what: str) -> Any:
        x = self._batch(x)
        if isinstance(x, torch.Tensor) and x.dim() == 4 and len(x) != 1:
            raise InputError(f"{what} explains one image; got a batch of {len(x)}. Pass x[i].")
        return x

    def baseline(
        self, x: torch.Tensor, target: Target, method: str, layer: str | None = None
    ) -> xr.DataArray:
        """A gradient-based baseline heatmap, summed over colour.

        Parameters
        ----------
        x, target
            As in :meth:`explain`.
        method : str
            ``"gradient"``, ``"gradient_x_input"``, ``"deconvnet"``, ``"guided_backprop"`` or
            ``"gradcam"``.
        layer : str, optional
            Grad-CAM's layer (default: the last Conv2d); the map is upsampled bilinearly.

        Returns
        -------
        xarray.DataArray
            ``method`` (sample, y, x) with ``target`` (sample).
        """
        if method not in BASELINES:
            raise ConfigError(f"unknown baseline {method!r}; choose one of {', '.join(BASELINES)}.")
        x = self._batch(x)
        targets = self._targets(target)
        result = baseline(self.model, x, targets, method, layer=layer, output=self.output)
        heat = as_numpy(result if method == "gradcam" else result.sum(dim=1))
        extra = {"layer": layer or last_conv_name(self.model)} if method == "gradcam" else {}
        return xr.DataArray(
            heat,
            dims=("sample", "y", "x"),
            coords={"target": ("sample", self._target_ids(targets, len(heat)))},
            name=method,
            attrs={"method": method, "model": self.model_name, "version": __version__, **extra},
        )

    def predict(self, x: torch.Tensor) -> xr.DataArray:
        """Class probabilities as ``probs`` (sample, class): softmax, or sigmoid for multi-label.

        Runs the engine's forward pass (kept for a following :meth:`explain` of the same ``x``),
        after which :attr:`layer_names` include the op-level layers.
        """
        logits = self.engine.logits(self._batch(x))  # this forward pass serves explain(x) too
        probs = probabilities(as_numpy(logits.float()), self.output_activation)
        n_classes = probs.shape[1]
        names = self.class_names or [str(i) for i in range(n_classes)]
        return xr.DataArray(
            probs,
            dims=("sample", "class"),
            coords={"class": np.arange(n_classes), "class_name": ("class", names)},
            name="probs",
        )


def _per_channel(relevance: torch.Tensor, axis: int = 1) -> torch.Tensor:
    """(N, ...) relevance summed per neuron (along ``axis``) over the rest, in float64: (N, C)."""
    moved = relevance.movedim(axis, 1)
    return moved.reshape(*moved.shape[:2], -1).sum(2, dtype=torch.float64)
