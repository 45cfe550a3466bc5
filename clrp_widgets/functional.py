"""Functional API: ``lrp`` and ``clrp``, torch in, torch out (DESIGN §2).

Calls reuse one :class:`~clrp_widgets.engine.RelevanceEngine` per model and configuration (rules,
bounds, canonizers; see :mod:`clrp_widgets.engine.memo`), held weakly and refreshed when a weight
changes, so a loop of calls costs what a kept engine costs. Those engines keep no denominators and
no forward pass between calls: one call needs about a gradient's memory. Calls from several
threads on one model are serialised by the model's lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from .engine.memo import memo_engine, one_shot
from .engine.outputs import OutputSelector
from .engine.presets import Bound
from .engine.rules import Rule


def lrp(
    model: nn.Module,
    x: Tensor,
    target: Any,
    *,
    rules: str | Mapping[Any, Rule] = "paper",
    input_bounds: tuple[Bound, Bound] | None = None,
    canonizers: str | Sequence[str] | None = "auto",
    overrides: Mapping[Any, Rule] | None = None,
    output: OutputSelector = None,
) -> Tensor:
    """LRP relevance of class ``target`` at the input, same shape as ``x`` (N, C, H, W).

    Parameters
    ----------
    model
        Classifier returning logits (N, classes); never modified.
    x
        Input batch, floating point.
    target
        One class index for every sample, or one per sample.
    rules
        Preset name (``"paper"``, ``"epsilon_plus"``, ``"epsilon_plus_flat"``,
        ``"epsilon_gamma_box"``, ``"epsilon_alpha2_beta1"``, ``"epsilon"``) or a mapping
        ``{layer type or module name: Rule}``.
    input_bounds
        ``(low, high)`` of the input for the z^B first-layer rule, scalars or per-channel ``(C,)``.
        None uses the CLRP authors' ImageNet-normalised bounds ``(-2.1179, 2.64)``.
    canonizers
        ``"auto"``, None, or a subset of ``("batchnorm", "resnet")``.
    overrides
        ``{module path, op node name, layer type or torch function: Rule}`` extending the preset,
        e.g. ``{"features.1.0.stochastic_depth": Pass(), torch.erf: Pass()}``.
    output
        Where the class scores are in a model output that is not a tensor: None finds a Hugging
        Face ``ModelOutput``'s ``.logits``, a ``"logits"`` entry or a tuple's only
        ``(N, classes)`` tensor; else a key or attribute name, an index or a callable.
    """
    engine = memo_engine(model, rules, input_bounds, canonizers, overrides, output)
    out = one_shot(engine, lambda e: e.run(x, target, contrast="lrp", kinds=("target",)))
    return out.input[0]


def clrp(
    model: nn.Module,
    x: Tensor,
    target: Any,
    *,
    variant: str | int = "clrp1",
    rules: str | Mapping[Any, Rule] = "paper",
    input_bounds: tuple[Bound, Bound] | None = None,
    dual_seed: str = "uniform",
    canonizers: str | Sequence[str] | None = "auto",
    overrides: Mapping[Any, Rule] | None = None,
    output: OutputSelector = None,
) -> Tensor:
    """Contrastive LRP map ``max(0, R_target - R_dual)`` at the input, same shape as ``x``.

    ``variant`` is ``"clrp1"`` (dual: all other classes), ``"clrp2"`` (dual: the logit layer's row
    ``-W_j``), ``"sglrp"`` (softmax-gradient seeds) or an int class B ("target rather than B").
    ``dual_seed="logits"`` selects the authors'-code CLRP1 dual (see
    :meth:`RelevanceEngine.run`). The other arguments are as in :func:`lrp`. The difference is
    computed in one backward pass of the seed difference.
    """
    engine = memo_engine(model, rules, input_bounds, canonizers, overrides, output)
    out = one_shot(
        engine,
        lambda e: e.run(x, target, contrast=variant, kinds=("contrast",), dual_seed=dual_seed),
    )
    return out.input[0].clamp(min=0)
