"""Models nobody here wrote: the timm and Hugging Face coverage matrix of issue 20.

Every model is built from its architecture alone (random weights, nothing is downloaded), then
re-initialised for an exact test as the torchvision zoo is (:mod:`zoo_models`): zero biases and
norm shifts, random weights where a library initialises them to zero (a head), zero BatchNorm
means, random positive norm scales, running variances and layer scales (gammas, gains) of order
1, and a rescale pass that keeps every stock Conv/Linear output of order 1. float64, a small
input uniform in [-1, 1].

:func:`measure` explains a model as a user would, with the preset given:

- ``"paper"`` (conservative): **exact** when the input relevance sums to the explained logit
  within 1e-6 in LRP and in CLRP1's dual, without a ``ConservationWarning``, and the CLRP1 and
  LRP maps are finite and not zero; a model that loses relevance must warn (never silent);
- ``"attnlrp"`` (not conservative): **explained** when the maps are finite, not zero and
  class-specific (the LRP maps of the two top classes differ);
- **refused**: a clear ``CLRPError`` (its message is the row's reason); any other exception is
  a crash, which the tests never allow.

``bench/zoo.py --timm --hf`` prints the whole matrix; the tests run it (see test_zoo_timm.py,
test_zoo_hf.py).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

BOUNDS = (-1.0, 1.0)
TOL = 1e-6
NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
SCALES = ("gamma", "gain", "layer_scale", "scale", "lambda1", "lambda2", "alpha")
SHIFTS = ("bias", "beta")  # ResMLP's Affine: alpha * x + beta

#: timm CNNs: name -> input size (the smallest the architecture takes, at most 64 px)
TIMM_CNN: dict[str, int] = {
    "resnet18": 32,
    "resnet26d": 32,  # ResNet-D
    "seresnet18": 32,  # squeeze-excitation
    "ecaresnet26t": 32,  # ECA: a sigmoid gate after expand_as
    "skresnet18": 32,  # selective kernel (softmax over branches)
    "resnest14d": 32,  # split attention (radix softmax)
    "res2net50_14w_8s": 32,
    "resnext26ts": 32,
    "seresnext26d_32x4d": 32,
    "dla34": 32,
    "dpn48b": 32,  # SiLU after its last block
    "dpn68": 32,
    "cspresnet50": 32,
    "cspdarknet53": 32,
    "cs3darknet_s": 32,
    "darknet53": 32,
    "hrnet_w18_small": 64,  # F.interpolate in its fuse layers
    "regnetx_002": 32,
    "regnety_002": 32,
    "regnetz_b16": 32,
    "rexnet_100": 32,
    "ghostnet_050": 32,
    "ghostnetv2_100": 64,  # F.interpolate of a sigmoid gate
    "ghostnetv3_050": 64,
    "repghostnet_050": 32,
    "mixnet_s": 32,
    "tf_efficientnet_b0": 32,  # Conv2dSame: pads in its forward
    "efficientnet_b0": 32,
    "mobilenetv2_050": 32,
    "mobilenetv3_small_050": 32,
    "mobilenetv4_conv_small": 32,
    "mnasnet_050": 32,
    "fbnetc_100": 32,
    "spnasnet_100": 32,
    "lcnet_050": 32,
    "nf_resnet26": 32,  # ScaledStdConv2d: standardises its weight in forward
    "nfnet_l0": 32,
    "dm_nfnet_f0": 32,
    "resnetv2_50x1_bit": 32,  # StdConv2d
    "resnetv2_50": 32,
    "repvgg_a0": 32,
    "mobileone_s0": 32,
    "ese_vovnet19b_dw": 32,
    "convnext_atto": 32,
    "convnextv2_atto": 32,  # GRN: torch.norm
    "poolformer_s12": 32,
    "poolformerv2_s12": 32,  # StarReLU: relu(x) ** 2
    "convformer_s18": 64,  # at 32 px its 2x2 last stages lose 1.2e-4 to z+'s stabiliser
    "tresnet_m": 64,  # space-to-depth before the first conv
    "legacy_xception": 32,
    "xception41": 32,
    "hgnet_tiny": 32,
    "hgnetv2_b0": 32,
    "inception_v3": 75,
    "inception_v4": 75,
    "inception_next_tiny": 32,
    "selecsls42b": 32,
    "gernet_s": 32,
    "vgg11": 32,
    "starnet_s1": 32,  # the star: an element-wise product of two branches
    "rdnet_tiny": 32,
    "mambaout_femto": 32,  # gated CNN
    "fastvit_t8": 64,
}
#: timm models with attention: CNNs with attention blocks, and vision transformers
TIMM_ATTENTION: dict[str, int] = {
    "botnet26t_256": 64,
    "lambda_resnet26t": 64,
    "levit_128s": 64,
    "efficientformer_l1": 224,  # its attention biases are sized for a 7x7 last stage
    "efficientformerv2_s0": 64,
    "edgenext_xx_small": 64,  # F.normalize (cross-covariance attention)
    "mobilevit_xxs": 64,
    "mobilevitv2_050": 64,
    "coatnet_nano_rw_224": 64,
    "maxvit_nano_rw_256": 64,
    "caformer_s18": 64,
    "tiny_vit_5m_224": 64,
    "vit_tiny_patch16_224": 32,
    "deit_tiny_patch16_224": 32,
    "deit_tiny_distilled_patch16_224": 32,
    "vit_small_patch14_dinov2": 28,
    "vit_little_patch16_reg4_gap_256": 32,
    "beit_base_patch16_224": 32,
    "eva02_tiny_patch14_224": 28,  # type_as, rotary embeddings
    "cait_xxs24_224": 32,
    "xcit_nano_12_p16_224": 32,
    "pit_ti_224": 64,
    "pvt_v2_b0": 64,
    "convit_tiny": 32,
    "focalnet_tiny_srf": 64,
    "twins_pcpvt_small": 64,
    "twins_svt_small": 64,
    "swin_tiny_patch4_window7_224": 64,
    "davit_tiny": 64,
    "gcvit_xxtiny": 64,
    "mixer_s16_224": 32,
    "resmlp_12_224": 32,
    "gmlp_ti16_224": 32,  # spatial gating: a product of two signals
}
#: the part of the timm matrix that ``make test`` runs (about a third of its time): a model of
#: each family that needed a change of the engine, or tests a rule nothing else does. The whole
#: matrix runs with ``CLRP_ZOO=full`` and in ``bench/zoo.py --timm``.
TIMM_CI = frozenset(
    {
        *("resnet26d", "ecaresnet26t", "skresnet18", "dla34", "dpn48b", "hrnet_w18_small"),
        *("ghostnet_050", "mixnet_s", "tf_efficientnet_b0", "mobilenetv3_small_050", "lcnet_050"),
        *("nf_resnet26", "resnetv2_50x1_bit", "repvgg_a0", "convnextv2_atto", "poolformerv2_s12"),
        *("hgnetv2_b0", "starnet_s1", "mambaout_femto", "inception_next_tiny", "regnety_002"),
        *("botnet26t_256", "lambda_resnet26t", "levit_128s", "edgenext_xx_small", "mobilevit_xxs"),
        *("vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224", "eva02_tiny_patch14_224"),
        *("xcit_nano_12_p16_224", "pvt_v2_b0", "gmlp_ti16_224", "convit_tiny", "pit_ti_224"),
    }
)


def timm_matrix(names: dict[str, int]) -> list[str]:
    """The names of ``names`` that this run tests: all with ``CLRP_ZOO=full``, else
    :data:`TIMM_CI`'s."""
    if os.environ.get("CLRP_ZOO") == "full":
        return list(names)
    return [n for n in names if n in TIMM_CI]


#: timm models whose constructor takes ``img_size`` for a small input
_IMG_SIZE = (
    "vit_",
    "deit",
    "beit",
    "eva",
    "cait",
    "xcit",
    "pit",
    "convit",
    "coatnet",
    "maxvit",
    "swin",
    "mixer",
    "resmlp",
    "gmlp",
    "gcvit",
    "twins",
    "efficientformerv2",
    "levit",
    "mobilevit",
    "botnet",
    "lambda",
)


@dataclass
class Case:
    """A model ready to explain: ``model`` (eval, float64), input ``x``, its top two classes."""

    name: str
    model: nn.Module
    x: Tensor
    target: int
    other: int
    output: Any = None


@dataclass
class Report:
    """What :func:`measure` found on one model (see the module docstring)."""

    name: str
    rules: str
    status: str  # "exact" | "approximate" | "explained" | "refused" | "crash"
    why: str = ""
    conservation_error: float = float("nan")
    warnings: list[str] = field(default_factory=list)
    layers: int = 0
    seconds: float = 0.0
    advice: Any = None  # the refusal's fix (an overrides mapping), if it has one
    constant_tokens: float = 0.0  # share of the logit kept by constant tokens (class token)
    model_unchanged: bool = True  # parameters, buffers, hooks and modes as they were


# ----------------------------------------------------------------------------- building


def create_timm(name: str, size: int) -> nn.Module:
    """timm architecture ``name`` with 10 classes and random weights, for ``size`` px input."""
    import timm

    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 10}
    if name.startswith(_IMG_SIZE):
        kwargs["img_size"] = size
    if name.startswith("swin"):
        kwargs["window_size"] = size // 8
    return timm.create_model(name, **kwargs)


def build_timm(name: str, size: int | None = None, seed: int = 0) -> Case:
    """timm model ``name`` re-initialised for an exact test, with its input."""
    size = size or {**TIMM_CNN, **TIMM_ATTENTION}[name]
    torch.manual_seed(seed)
    return _case(name, create_timm(name, size), size, seed)


def build_hf(family: str, seed: int = 0) -> Case:
    """The Hugging Face classifier of ``family`` (:data:`HF_FAMILIES`), re-initialised likewise."""
    torch.manual_seed(seed)
    model, size = create_hf(family)
    return _case(family, model, size, seed)


def _case(name: str, model: nn.Module, size: int, seed: int) -> Case:
    model = model.to(torch.float64).eval()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(1, 3, size, size, generator=g, dtype=torch.float64) * 2 - 1
    reinitialise(model, x, seed)
    with torch.no_grad():
        out = model(x)
    logits = getattr(out, "logits", out)
    top = logits[0].argsort(descending=True)
    return Case(name, model, x, int(top[0]), int(top[1]))


@torch.no_grad()
def reinitialise(model: nn.Module, x: Tensor, seed: int = 0) -> None:
    """Zero shifts and biases, order-1 scales, then the rescale pass (module docstring)."""
    g = torch.Generator().manual_seed(seed)

    def uniform(t: Tensor, low: float, high: float) -> None:
        t.copy_(torch.rand(t.shape, generator=g, dtype=torch.float64).to(t) * (high - low) + low)

    done: set[int] = set()
    for module in model.modules():
        if isinstance(module, NORMS):
            if getattr(module, "weight", None) is not None:
                uniform(module.weight, 0.5, 1.5)
                done.add(id(module.weight))
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
                done.add(id(module.bias))
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
                module.running_mean.zero_()
                uniform(module.running_var, 0.5, 2.0)
    for name, p in model.named_parameters():
        last = name.rsplit(".", 1)[-1]
        if id(p) in done or not p.is_floating_point():
            continue
        if any(shift in last for shift in SHIFTS):
            p.zero_()
        elif p.ndim <= 1 or last in SCALES:
            uniform(p, 0.5, 1.5)
        elif not p.any():  # zero-initialised (MLP-Mixer's head): random, as the rest
            fan_in = p[0].numel()
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(p) / fan_in**0.5)
    for name, b in model.named_buffers():
        if name.endswith("running_mean") and b.is_floating_point():
            b.zero_()  # timm's own BatchNorm-like layers
    rescale(model, x)


def _stock(module: nn.Module) -> bool:
    stock = (nn.Conv1d.forward, nn.Conv2d.forward, nn.Linear.forward)
    return type(module).forward in stock and getattr(module, "padding_mode", "zeros") == "zeros"


@torch.no_grad()
def rescale(model: nn.Module, x: Tensor) -> None:
    """Divide each stock Conv/Linear weight by the RMS of its output on ``x`` (one pass)."""

    def hook(module: nn.Module, _: object, out: Any) -> Any:
        if not isinstance(out, Tensor):
            return out
        rms = out.pow(2).mean().sqrt()
        if rms > 0:
            module.weight.div_(rms)
            return out / rms
        return out

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) and _stock(m)
    ]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()


# ----------------------------------------------------------------------------- measuring


def measure(case: Case, rules: str = "paper") -> Report:
    """Explain ``case`` with ``rules`` (LRP and CLRP1, input only) and judge it."""
    import clrp_widgets as cw
    from clrp_widgets.engine.errors import CLRPError

    start = time.perf_counter()
    report = Report(case.name, rules, "crash")
    before = snapshot(case.model)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ex = cw.Explainer(case.model, rules=rules, input_bounds=BOUNDS, output=case.output)
            tree = ex.explain(case.x, case.target, contrast="clrp1", layers=None)
            other = ex.explain(case.x, case.other, contrast="lrp", layers=None)
    except CLRPError as err:
        report.status, report.why = "refused", f"{type(err).__name__}: {err}"
        report.advice = getattr(err, "fix", None)
        return _finish(report, case, before, start)
    except Exception as err:  # a crash: the tests fail on it
        report.why = f"{type(err).__name__}: {err}"
        return _finish(report, case, before, start)
    _finish(report, case, before, start)
    report.layers = len(ex.layer_names)
    report.warnings = [
        str(w.message) for w in caught if w.category.__name__ == "ConservationWarning"
    ]
    rel = tree["input"]["relevance"]
    logit = float(tree["logits"].values[0, case.target])
    kept = _kept_by_constant_tokens(ex, case)
    sums = [float(rel.sel(kind=k).values.sum()) + kept[k] for k in ("target", "dual")]
    scale = abs(logit) or 1.0  # a logit of exactly 0: the absolute error
    report.conservation_error = max(abs(s - logit) for s in sums) / scale
    report.constant_tokens = kept["target"] / scale
    lrp = torch.as_tensor(rel.sel(kind="target").values[0])
    lrp_other = torch.as_tensor(other["input"]["relevance"].values[0, 0])
    clrp1 = torch.as_tensor(rel.sel(kind="contrast").values[0]).clamp(min=0)
    report.why = _judge(report, rules, lrp, lrp_other, clrp1)
    if report.why:
        report.status = "approximate"
    else:
        report.status = "exact" if rules == "paper" else "explained"
    return report


def snapshot(model: nn.Module) -> tuple[Any, ...]:
    """Everything of ``model`` an explanation must leave as it was."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    hooks = [
        (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks), m.training)
        for m in model.modules()
    ]
    grads = [p.grad is None and p.requires_grad for p in model.parameters()]
    return state, hooks, grads


def same_snapshot(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether two :func:`snapshot` results are identical (bit for bit)."""
    state_a, state_b = a[0], b[0]
    same_state = state_a.keys() == state_b.keys() and all(
        torch.equal(state_a[k], state_b[k]) for k in state_a
    )
    return same_state and a[1:] == b[1:]


def _finish(report: Report, case: Case, before: tuple[Any, ...], start: float) -> Report:
    report.seconds = time.perf_counter() - start
    report.model_unchanged = same_snapshot(before, snapshot(case.model))
    return report


def _kept_by_constant_tokens(ex: Any, case: Case) -> dict[str, float]:
    """Relevance that constant tokens (a class token) keep, per kind: the input map sums to the
    explained logit less this (``RelevanceEngine.constant_tokens``)."""
    masks = ex.engine.constant_tokens()
    if not masks:
        return {"target": 0.0, "dual": 0.0}
    kinds = ("target", "dual", "contrast")
    out = ex.engine.run(case.x, case.target, "clrp1", kinds=kinds, capture=list(masks))
    return {
        kind: sum(float((out.layers[n].relevance[k] * m).sum()) for n, m in masks.items())
        for k, kind in enumerate(kinds)
    }


def _judge(report: Report, rules: str, lrp: Tensor, lrp_other: Tensor, clrp1: Tensor) -> str:
    why = []
    if rules == "paper":
        if report.conservation_error > TOL:
            why.append(f"input relevance off the logit by {report.conservation_error:.1e}")
        if report.warnings:
            why.append("ConservationWarning: " + report.warnings[0].split(":")[0])
    for label, heat in (("LRP", lrp), ("CLRP1", clrp1)):
        if not bool(torch.isfinite(heat).all()) or float(heat.abs().max()) == 0:
            why.append(f"{label} map not finite or all zero")
    scale = float(lrp.abs().max()) or 1.0
    if float((lrp - lrp_other).abs().max()) <= 1e-3 * scale:
        why.append("the top two classes get the same LRP map")
    return "; ".join(why)


# ----------------------------------------------------------------------------- Hugging Face


_VIT = {
    "image_size": 32,
    "patch_size": 8,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
_TEXT = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
_WITH_VISION = {"vision_config": _VIT, "text_config": _TEXT}
_STAGES = {"hidden_sizes": [16, 32, 64, 64], "depths": [1, 1, 1, 1], "embedding_size": 16}
_META = {"hidden_sizes": [8, 16, 32, 64], "depths": [1, 1, 1, 1]}
_SWIN = {
    "image_size": 32,
    "patch_size": 2,
    "embed_dim": 16,
    "depths": [1, 1],
    "num_heads": [1, 2],
    "window_size": 4,
}
_LEVIT = {
    "image_size": 64,
    "hidden_sizes": [32, 48, 64],
    "num_attention_heads": [1, 2, 2],
    "depths": [1, 1, 1],
    "key_dim": [8, 8, 8],
}
_PVT = {
    "hidden_sizes": [16, 32],
    "depths": [1, 1],
    "num_attention_heads": [1, 2],
    "strides": [4, 2],
    "mlp_ratios": [2, 2],
    "num_encoder_blocks": 2,
}
#: family -> (model class, config class, config arguments, input size); 10 classes each
_HF_SPECS: dict[str, tuple[str, str, dict[str, Any], int]] = {
    "beit": ("BeitForImageClassification", "BeitConfig", {**_VIT, "use_mean_pooling": True}, 32),
    "bit": ("BitForImageClassification", "BitConfig", {**_STAGES, "num_groups": 8}, 32),
    "clip": ("CLIPForImageClassification", "CLIPConfig", _WITH_VISION, 32),
    "convnext": ("ConvNextForImageClassification", "ConvNextConfig", _META, 32),
    "convnextv2": ("ConvNextV2ForImageClassification", "ConvNextV2Config", _META, 32),
    "cvt": (
        "CvtForImageClassification",
        "CvtConfig",
        {
            "embed_dim": [16, 24, 32],
            "depth": [1, 2, 3],  # transformers indexes stage i's drop paths with i
            "num_heads": [1, 2, 2],
            "mlp_ratio": [2.0, 2.0, 2.0],
            "drop_path_rate": [0.0, 0.0, 0.0],
        },
        32,
    ),
    "data2vec-vision": (
        "Data2VecVisionForImageClassification",
        "Data2VecVisionConfig",
        {**_VIT, "use_mean_pooling": True},
        32,
    ),
    "deit": ("DeiTForImageClassification", "DeiTConfig", _VIT, 32),
    "deit-with-teacher": ("DeiTForImageClassificationWithTeacher", "DeiTConfig", _VIT, 32),
    "dinov2": ("Dinov2ForImageClassification", "Dinov2Config", _VIT, 32),
    "dinov2_with_registers": (
        "Dinov2WithRegistersForImageClassification",
        "Dinov2WithRegistersConfig",
        {**_VIT, "num_register_tokens": 2},
        32,
    ),
    "donut-swin": ("DonutSwinForImageClassification", "DonutSwinConfig", _SWIN, 32),
    "efficientformer": (
        "EfficientFormerForImageClassification",
        "EfficientFormerConfig",
        {
            "depths": [1, 1, 1, 2],
            "hidden_sizes": [16, 32, 48, 64],
            "dim": 64,
            "resolution": 2,
            "image_size": 64,
            "num_attention_heads": 2,
            "key_dim": 8,
        },
        64,
    ),
    "efficientnet": (
        "EfficientNetForImageClassification",
        "EfficientNetConfig",
        {"image_size": 32, "width_coefficient": 0.25, "depth_coefficient": 0.25, "hidden_dim": 320},
        32,
    ),
    "focalnet": (
        "FocalNetForImageClassification",
        "FocalNetConfig",
        {
            "image_size": 32,
            "patch_size": 4,
            "embed_dim": 16,
            "depths": [1, 1],
            "focal_levels": [2, 2],
            "focal_windows": [3, 3],
        },
        32,
    ),
    "hgnet_v2": (
        "HGNetV2ForImageClassification",
        "HGNetV2Config",
        {
            "stem_channels": [3, 8, 16],
            "stage_in_channels": [16, 32],
            "stage_mid_channels": [8, 16],
            "stage_out_channels": [32, 64],
            "stage_num_blocks": [1, 1],
            "stage_downsample": [False, True],
            "stage_light_block": [False, False],
            "stage_kernel_size": [3, 3],
            "stage_numb_of_layers": [2, 2],
            "hidden_sizes": [32, 64],
            "depths": [1, 1],
        },
        32,
    ),
    "hiera": (
        "HieraForImageClassification",
        "HieraConfig",
        {
            "embed_dim": 16,
            "image_size": [64, 64],
            "patch_size": [7, 7],
            "patch_stride": [4, 4],
            "patch_padding": [3, 3],
            "depths": [1, 1, 1, 1],
            "num_heads": [1, 1, 2, 2],
        },
        64,
    ),
    "ijepa": ("IJepaForImageClassification", "IJepaConfig", _VIT, 32),
    "levit": ("LevitForImageClassification", "LevitConfig", _LEVIT, 64),
    "levit-with-teacher": ("LevitForImageClassificationWithTeacher", "LevitConfig", _LEVIT, 64),
    "mobilenet_v1": (
        "MobileNetV1ForImageClassification",
        "MobileNetV1Config",
        {"image_size": 32, "depth_multiplier": 0.25},
        32,
    ),
    "mobilenet_v2": (
        "MobileNetV2ForImageClassification",
        "MobileNetV2Config",
        {"image_size": 32, "depth_multiplier": 0.25},
        32,
    ),
    "mobilevit": (
        "MobileViTForImageClassification",
        "MobileViTConfig",
        {
            "image_size": 64,
            "hidden_sizes": [16, 24, 32],
            "neck_hidden_sizes": [8, 8, 16, 16, 24, 32, 64],
        },
        64,
    ),
    "mobilevitv2": (
        "MobileViTV2ForImageClassification",
        "MobileViTV2Config",
        {"image_size": 64, "width_multiplier": 0.25},
        64,
    ),
    "perceiver": (
        "PerceiverForImageClassificationLearned",
        "PerceiverConfig",
        {
            "d_latents": 32,
            "d_model": 32,
            "num_latents": 8,
            "num_blocks": 1,
            "num_self_attends_per_block": 1,
            "num_self_attention_heads": 2,
            "num_cross_attention_heads": 1,
            "image_size": 16,
        },
        16,
    ),
    "poolformer": ("PoolFormerForImageClassification", "PoolFormerConfig", _META, 32),
    "pvt": (
        "PvtForImageClassification",
        "PvtConfig",
        {**_PVT, "image_size": 32, "sequence_reduction_ratios": [2, 1], "patch_sizes": [4, 2]},
        32,
    ),
    "pvt_v2": (
        "PvtV2ForImageClassification",
        "PvtV2Config",
        {**_PVT, "image_size": 32, "sr_ratios": [2, 1], "patch_sizes": [7, 3]},
        32,
    ),
    "regnet": ("RegNetForImageClassification", "RegNetConfig", {**_STAGES, "groups_width": 8}, 32),
    "resnet": (
        "ResNetForImageClassification",
        "ResNetConfig",
        {**_STAGES, "layer_type": "basic"},
        32,
    ),
    "segformer": (
        "SegformerForImageClassification",
        "SegformerConfig",
        {**_PVT, "sr_ratios": [2, 1], "patch_sizes": [7, 3], "decoder_hidden_size": 32},
        32,
    ),
    "siglip": ("SiglipForImageClassification", "SiglipConfig", _WITH_VISION, 32),
    "swiftformer": (
        "SwiftFormerForImageClassification",
        "SwiftFormerConfig",
        {"image_size": 32, "depths": [1, 1, 1, 1], "embed_dims": [8, 16, 32, 48]},
        32,
    ),
    "swin": ("SwinForImageClassification", "SwinConfig", _SWIN, 32),
    "swinv2": ("Swinv2ForImageClassification", "Swinv2Config", _SWIN, 32),
    "textnet": (
        "TextNetForImageClassification",
        "TextNetConfig",
        {
            "stem_out_channels": 8,
            "hidden_sizes": [8, 8, 16, 32, 64],
            "conv_layer_kernel_sizes": [[[3, 3]], [[3, 3]], [[3, 3]], [[3, 3]]],
            "conv_layer_strides": [[1], [2], [2], [2]],
            "image_size": [32, 32],
        },
        32,
    ),
    "timm_wrapper": (
        "TimmWrapperForImageClassification",
        "TimmWrapperConfig",
        {"architecture": "resnet10t"},
        32,
    ),
    "van": ("VanForImageClassification", "VanConfig", {**_META, "image_size": 32}, 32),
    "vit": ("ViTForImageClassification", "ViTConfig", _VIT, 32),
    "vit_msn": ("ViTMSNForImageClassification", "ViTMSNConfig", _VIT, 32),
}
#: every image classifier family of transformers 4.53 that builds from a config
HF_FAMILIES = tuple(_HF_SPECS)


def create_hf(family: str) -> tuple[nn.Module, int]:
    """The Hugging Face classifier of ``family`` with random weights, and its input size."""
    import transformers

    model_class, config_class, kwargs, size = _HF_SPECS[family]
    config = getattr(transformers, config_class)(num_labels=10, **kwargs)
    return getattr(transformers, model_class)(config).eval(), size


#: transformers' image classification families left out, and why (they do not build here)
HF_EXCLUDED = {
    "dinat": "needs the natten package (compiled neighbourhood attention)",
    "nat": "needs the natten package (compiled neighbourhood attention)",
    "imagegpt": "takes colour-cluster token ids, not an image tensor",
    "shieldgemma2": "a Gemma 3 language model (several GB)",
    "siglip2": "takes patch sequences with an attention mask, not an image tensor",
    "vit_hybrid": "deprecated; its weight initialisation fails in transformers 4.53",
}
#: HF families with attention (explained under both presets); the rest are CNNs
HF_ATTENTION = {
    "beit", "clip", "cvt", "data2vec-vision", "deit", "deit-with-teacher", "dinov2",
    "dinov2_with_registers", "donut-swin", "efficientformer", "hiera", "ijepa", "levit",
    "levit-with-teacher", "mobilevit", "mobilevitv2", "perceiver", "pvt", "pvt_v2", "segformer",
    "siglip", "swiftformer", "swin", "swinv2", "vit", "vit_msn",
}  # fmt: skip
