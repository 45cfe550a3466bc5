"""Rule presets and the resolution of a rule for each module.

Presets (zennit's names and meanings, plus the CLRP paper's):

``"paper"``
    z^B on the first Conv/Linear layer met in the forward pass, z+ without bias (eps=1e-9) on every
    other Conv and Linear layer (the logit layer included), with a z- fallback where z+ is undefined
    (an output with relevance but no positive contribution, from signed input: see ``ZPlus``),
    max-pool winner-takes-all (gradient routing), average pooling by the z rule except at identity
    size (pass), activations pass. Attention blocks (in a hybrid CNN or a ViT) are explained
    conservatively, as CP-LRP does (Ali et al., ICML 2022): the attention map (a softmax) is held
    constant and AV's relevance goes to V by the z rule; other products of two signals (QK^T,
    ``silu(a) * b``) take AttnLRP's uniform rule; LayerNorm passes (its normaliser constant).
``"epsilon_plus"``
    zennit's EpsilonPlus: z+ with positive bias on Conv, epsilon (1e-6) on Linear.
``"epsilon_plus_flat"``
    EpsilonPlus with the flat rule on the first Conv/Linear layer.
``"epsilon_gamma_box"``
    z^B on the first Conv, gamma (0.25) on other Conv, epsilon (1e-6) on Linear.
``"epsilon_alpha2_beta1"``
    alpha=2, beta=1 on Conv, epsilon (1e-6) on Linear.
``"epsilon"``
    epsilon (0.25) on every Conv and Linear layer.
``"attnlrp"``
    AttnLRP for transformers (Achtibat et al., ICML 2024; :mod:`.attention`): z^B on the first
    Conv (the patch embedding), epsilon (1e-6, bias included) on every other Conv and Linear
    layer, the AttnLRP softmax rule, the uniform rule on products of activations (QK^T, AV),
    LayerNorm with its normaliser held constant, activations (GELU) pass, additive constants
    (position embeddings, attention biases) absorb their share like a bias. Not conservative.
``"cp_lrp"``
    As ``"attnlrp"`` but the attention is held constant (CP-LRP, Ali et al., ICML 2022): no
    relevance enters the softmax, AV's relevance goes to V. What LXT 2.1 applies to
    torchvision's ViT. Not conservative.
``"lrp0"``
    LRP-0 (Bach et al. 2015): the epsilon rule with a 1e-20 stabiliser on every Conv and Linear
    layer and the z rule on sums and average pooling. On a bias-free piecewise-linear network
    (ReLU, max pooling, BatchNorm without shift) it equals gradient x input, so it is the
    engine's independent check against autograd; its maps of deep networks are noisy
    (Montavon et al. 2019), so it is not an explanation preset.

In all zennit presets, average pooling and residual sums use the z rule (zennit's ``Norm``, 1e-6).
A custom mapping ``{layer type or module name: Rule}`` may be given instead; names win over types
and types are matched with ``isinstance`` in the mapping's order. Layers it does not name keep the
defaults for parameter-free layers (activations pass, max pooling by gradient, average pooling by
the z rule); a Conv/Linear layer without a rule is an error.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from .errors import ConfigError, InputError
from .ops import CONV_TYPES, LINEAR_TYPES
from .optable import op_name
from .rules import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Gradient,
    Norm,
    Pass,
    Rule,
    ZBox,
    ZPlus,
)

PRESETS = (
    "paper",
    "epsilon_plus",
    "epsilon_plus_flat",
    "epsilon_gamma_box",
    "epsilon_alpha2_beta1",
    "epsilon",
    "attnlrp",
    "cp_lrp",
    "lrp0",
)
#: Bounds of ImageNet-normalised input used by the CLRP authors' code (the default of ``"paper"``).
PAPER_BOUNDS = (-2.1179, 2.64)

ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Mish,
)
MAX_POOLS = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
AVG_POOLS = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)
SHAPE_ONLY = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Flatten,
    nn.Unflatten,
)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

Bound = float | torch.Tensor


@dataclass
class RuleSet:
    """The rule of every module: by name, by type, and a special rule for the first layer."""

    by_name: dict[str, Rule] = field(default_factory=dict)
    by_type: list[tuple[type | tuple[type, ...], Rule]] = field(default_factory=list)
    first: Rule | None = None
    first_types: tuple[type, ...] = LINEAR_TYPES
    label: str = "custom"
    sum_eps: float = 1e-6
    by_op: dict[str, Rule] = field(default_factory=dict)
    conservative: bool = False

    def rule_for_type(self, cls: type, is_first: bool = False) -> Rule | None:
        """The rule a module of class ``cls`` would get (for op-level Conv/Linear calls)."""
        if is_first and self.first is not None and issubclass(cls, self.first_types):
            return self.first
        for types, rule in self.by_type:
            if issubclass(cls, types):
                return rule
        return None

    def rule_for(self, name: str, module: nn.Module, is_first: bool = False) -> Rule | None:
        """The rule for ``module`` (None when no rule is known)."""
        if name in self.by_name:
            return self.by_name[name]
        if is_first and self.first is not None and isinstance(module, self.first_types):
            return self.first
        for types, rule in self.by_type:
            if isinstance(module, types):
                return rule
        return None


def _base(eps: float, pass_identity: bool) -> list[tuple[type | tuple[type, ...], Rule]]:
    return [
        (ACTIVATIONS, Pass()),
        (MAX_POOLS + SHAPE_ONLY, Gradient()),
        (AVG_POOLS, Norm(eps=eps, pass_identity=pass_identity)),
        (BATCH_NORMS, Pass()),
    ]


def normalize_bounds(input_bounds: tuple[Bound, Bound] | None) -> tuple[Bound, Bound]:
    """Check ``(low, high)``; None gives the authors' ImageNet bounds :data:`PAPER_BOUNDS`."""
    if input_bounds is None:
        return PAPER_BOUNDS
    try:
        low, high = input_bounds
    except (TypeError, ValueError):
        raise ConfigError(
            f"input_bounds must be a pair (low, high), got {input_bounds!r}; pass e.g. (0, 1) for "
            "raw images in [0, 1] or per-channel tensors of shape (C,)."
        ) from None
    low_t = torch.as_tensor(low, dtype=torch.float64)
    high_t = torch.as_tensor(high, dtype=torch.float64)
    try:
        ordered = bool((low_t < high_t).all())
    except RuntimeError:
        raise ConfigError(
            f"input_bounds low {tuple(low_t.shape)} and high {tuple(high_t.shape)} do not "
            "broadcast; give scalars or tensors of the same per-channel shape (C,)."
        ) from None
    if not ordered or not bool(torch.isfinite(low_t).all() & torch.isfinite(high_t).all()):
        raise InputError(
            f"input_bounds must satisfy low < high (finite) everywhere, got low={low!r}, "
            f"high={high!r}; pass the lowest and highest possible input values, e.g. (0, 1)."
        )
    return low, high


def resolve_rules(
    rules: str | Mapping[type | str, Rule], input_bounds: tuple[Bound, Bound] | None
) -> RuleSet:
    """Turn a preset name or a custom mapping into a :class:`RuleSet`."""
    if isinstance(rules, Mapping):
        return _custom(rules)
    if not isinstance(rules, str) or rules not in PRESETS:
        close = difflib.get_close_matches(str(rules), PRESETS, n=2)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ConfigError(
            f"unknown rules preset {rules!r}.{hint} Choose one of {', '.join(PRESETS)}, or pass a "
            "mapping {layer type or module name: Rule}."
        )
    low, high = normalize_bounds(input_bounds)
    if rules == "paper":
        zp = ZPlus(eps=1e-9, bias=False)
        return RuleSet(
            by_type=[*_base(1e-9, True), (LINEAR_TYPES, zp)],
            first=ZBox(low, high, eps=1e-9),
            label=rules,
            sum_eps=1e-9,
            by_op=_paper_attention(eps=1e-9),
            conservative=True,
        )
    if rules in ("attnlrp", "cp_lrp"):
        return _attention_preset(rules, low, high)
    if rules == "lrp0":
        return RuleSet(
            by_type=[*_base(1e-20, True), (LINEAR_TYPES, Epsilon(eps=1e-20))],
            label=rules,
            sum_eps=1e-20,
            by_op=_paper_attention(eps=1e-20),
        )
    eps_lin = Epsilon(eps=1e-6)
    conv_rule: Rule = {
        "epsilon_plus": ZPlus(eps=1e-6, bias=True),
        "epsilon_plus_flat": ZPlus(eps=1e-6, bias=True),
        "epsilon_gamma_box": Gamma(gamma=0.25, eps=1e-6),
        "epsilon_alpha2_beta1": AlphaBeta(alpha=2.0, beta=1.0, eps=1e-6),
        "epsilon": Epsilon(eps=0.25),
    }[rules]
    lin_rule = Epsilon(eps=0.25) if rules == "epsilon" else eps_lin
    first: Rule | None = None
    first_types: tuple[type, ...] = LINEAR_TYPES
    if rules == "epsilon_plus_flat":
        first = Flat(eps=1e-6)
    elif rules == "epsilon_gamma_box":
        first, first_types = ZBox(low, high, eps=1e-6), CONV_TYPES
    return RuleSet(
        by_type=[*_base(1e-6, False), (CONV_TYPES, conv_rule), (nn.Linear, lin_rule)],
        first=first,
        first_types=first_types,
        label=rules,
    )


def _paper_attention(eps: float) -> dict[str, Rule]:
    """The paper preset at attention: CP-LRP's constant attention, conservative (see
    :class:`~.attention.GatedProduct`); fused attention is run as its steps."""
    from .attention import Decompose, GatedProduct

    product = GatedProduct(eps=eps)
    return {
        "matmul": product,
        "bmm": product,
        "einsum": product,
        "multi_head_attention_forward": Decompose(),
        "scaled_dot_product_attention": Decompose(),
    }


def _attention_preset(name: str, low: Bound, high: Bound) -> RuleSet:
    """The AttnLRP / CP-LRP presets (see the module docstring and :mod:`.attention`)."""
    from .attention import (
        AffineSum,
        Decompose,
        HoldConstant,
        LayerNormRule,
        ProductRule,
        SoftmaxRule,
    )

    eps = 1e-6
    product = ProductRule(eps=eps)
    by_op: dict[str, Rule] = {
        "softmax": SoftmaxRule() if name == "attnlrp" else HoldConstant(),
        "matmul": product,
        "bmm": product,
        "einsum": product,
        "layer_norm": LayerNormRule(eps=eps),
        "add": AffineSum(eps=eps),
        "sub": AffineSum(eps=eps),
        "rsub": AffineSum(eps=eps),
        "multi_head_attention_forward": Decompose(),
        "scaled_dot_product_attention": Decompose(),
    }
    return RuleSet(
        by_type=[*_base(eps, False), (LINEAR_TYPES, Epsilon(eps=eps))],
        first=ZBox(low, high, eps=1e-9),
        first_types=CONV_TYPES,
        label=name,
        sum_eps=eps,
        by_op=by_op,
    )


def _custom(mapping: Mapping[type | str, Rule]) -> RuleSet:
    by_name: dict[str, Rule] = {}
    by_type: list[tuple[type | tuple[type, ...], Rule]] = []
    for key, rule in mapping.items():
        if not isinstance(rule, Rule):
            raise ConfigError(
                f"rules[{key!r}] is {rule!r}, not a Rule; use e.g. ZPlus(), Epsilon(0.25) or "
                "Pass() from clrp_widgets.engine.rules."
            )
        if isinstance(key, str):
            by_name[key] = rule
        elif isinstance(key, type) or (
            isinstance(key, tuple) and all(isinstance(k, type) for k in key)
        ):
            by_type.append((key, rule))
        else:
            raise ConfigError(
                f"rules key {key!r} is neither a module name nor a layer type; use e.g. "
                "{'features.0': ZBox(0, 1), torch.nn.Conv2d: ZPlus()}."
            )
    return RuleSet(by_name=by_name, by_type=[*by_type, *_base(1e-6, False)])


def apply_overrides(ruleset: RuleSet, overrides: Mapping[Any, Rule] | None) -> RuleSet:
    """``ruleset`` extended by ``overrides`` ``{module path, op node name, layer type or torch
    function: Rule}``; the overrides win over the preset's rules. A conservative preset stays
    guarded: an override that leaks relevance is reported by the conservation guard."""
    if not overrides:
        return ruleset
    if not isinstance(overrides, Mapping):
        raise ConfigError(
            f"overrides must be a mapping {{name, layer type or torch function: Rule}}, got "
            f"{type(overrides).__name__}; e.g. overrides={{'layer1.0:add': Norm()}}."
        )
    by_name, by_type, by_op = dict(ruleset.by_name), [], dict(ruleset.by_op)
    for key, rule in overrides.items():
        if not isinstance(rule, Rule):
            raise ConfigError(
                f"overrides[{key!r}] is {rule!r}, not a Rule; use e.g. Pass(), Norm() or "
                "Epsilon(0.25) from clrp_widgets.engine.rules."
            )
        if isinstance(key, str):
            by_name[key] = rule
        elif isinstance(key, type) or (
            isinstance(key, tuple) and all(isinstance(k, type) for k in key)
        ):
            by_type.append((key, rule))
        elif callable(key):
            by_op[op_name(key)[0]] = rule
        else:
            raise ConfigError(
                f"overrides key {key!r} is neither a module path, an op node name, a layer type "
                "nor a torch function; use e.g. {'features.3': Pass(), torch.nn.Conv2d: ZPlus(), "
                "torch.erf: Pass()}."
            )
    return replace(
        ruleset,
        by_name=by_name,
        by_type=[*by_type, *ruleset.by_type],
        by_op=by_op,
    )
