"""The torchvision model zoo as the coverage matrix of issue 9 builds it (tests, bench, README).

Every model gets random weights (nothing is downloaded), zero biases and zero BatchNorm /
LayerNorm shifts (so the paper's rules are exactly conservative), random positive norm scales
and running variances (so merging them is really tested), ConvNeXt's layer scales of order 1
(torchvision's 1e-6 would hide the residual branches), and a rescale pass on a fixed input that
divides every Conv/Linear weight by the RMS of its output, so activations stay of order 1 from
the first layer to the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision
from torch import Tensor, nn

#: The models of the coverage matrix, in the order of issue 9, with their test input size: 16 px
#: where the architecture takes it (its first stages still see a spatial map; the deep stages are
#: at 1x1 from 32 px on anyway), else the smallest size it takes. efficientnet_b0 stays at 32 px,
#: where z+'s stabiliser shows (test_zoo.STABILISER_TOL, README "Supported models").
ZOO: dict[str, int] = {
    "alexnet": 64,  # its third max-pool needs at least 63 px
    "vgg11_bn": 32,  # five 2x2 max-pools
    "resnet18": 16,
    "resnext50_32x4d": 16,
    "wide_resnet50_2": 16,
    "densenet121": 32,  # needs at least 29 px
    "mobilenet_v2": 16,
    "mobilenet_v3_small": 16,
    "efficientnet_b0": 32,
    "efficientnet_v2_s": 16,
    "regnet_y_400mf": 16,
    "shufflenet_v2_x0_5": 16,
    "squeezenet1_1": 32,  # needs at least 17 px; 0.2 s either way
    "googlenet": 16,  # needs at least 15 px
    "inception_v3": 75,  # needs at least 75 px
    "mnasnet0_5": 16,
    "convnext_tiny": 32,  # needs at least 32 px
}
#: Input bounds of :func:`zoo_input` (uniform in [-1, 1]) for the first layer's z^B rule.
BOUNDS = (-1.0, 1.0)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)


@dataclass
class ZooCase:
    """A model of the zoo, ready to explain: ``model`` (eval), input ``x`` and its top class."""

    name: str
    model: nn.Module
    x: Tensor
    target: int


def construct(
    name: str, classes: int = 10, aux_logits: bool = False, hidden: int | None = 512
) -> nn.Module:
    """The torchvision architecture ``name`` with torchvision's random initialisation, in eval.

    ``hidden``: width of the hidden Linear layers of AlexNet's and VGG's classifiers (4096 in
    torchvision; None keeps it). The layers, their names and their order stay the same; only
    their width shrinks, which keeps the matrix fast. These two models are built on the meta
    device and then initialised layer by layer (``reset_parameters``: PyTorch's defaults, not
    torchvision's VGG init): filling torchvision's wide classifier first took most of their time.
    """
    kwargs: dict = {"weights": None, "num_classes": classes}
    if name in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=aux_logits, init_weights=False)
    if hidden is None or not (name == "alexnet" or name.startswith("vgg")):
        return getattr(torchvision.models, name)(**kwargs).eval()
    # built without storage, so that the 4096-wide classifier (120M weights for VGG) that the
    # narrow one replaces is never filled; then every layer gets PyTorch's default initialisation
    with torch.device("meta"):
        model = getattr(torchvision.models, name)(**kwargs)
    narrow_classifier(model, hidden)
    model.to_empty(device="cpu")
    for module in model.modules():
        if any(True for _ in module.parameters(recurse=False)) or list(module.buffers(False)):
            module.reset_parameters()  # type: ignore[operator]
    return model.eval()


def narrow_classifier(model: nn.Module, width: int) -> None:
    """Give the hidden Linear layers of ``model.classifier`` ``width`` units each."""
    layers = list(model.classifier)
    linear = [i for i, m in enumerate(layers) if isinstance(m, nn.Linear)]
    for k, i in enumerate(linear):
        old = layers[i]
        n_in = old.in_features if k == 0 else width
        n_out = old.out_features if k == len(linear) - 1 else width
        layers[i] = nn.Linear(n_in, n_out, device=old.weight.device)
    model.classifier = nn.Sequential(*layers)


def zoo_input(size: int, n: int = 1, dtype: torch.dtype = torch.float64, seed: int = 1) -> Tensor:
    """A fixed random input (n, 3, size, size), uniform in :data:`BOUNDS`."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, size, size, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)


@torch.no_grad()
def reinitialise(model: nn.Module, x: Tensor, seed: int = 0) -> nn.Module:
    """Zero shifts, random positive norm scales, order-1 layer scales; then the rescale pass."""
    g = torch.Generator().manual_seed(seed)

    def uniform(t: Tensor, low: float, high: float) -> None:
        t.copy_(torch.rand(t.shape, generator=g, dtype=torch.float64) * (high - low) + low)

    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
            module.bias.zero_()
        if isinstance(module, NORMS):
            if module.weight is not None:
                uniform(module.weight, 0.5, 1.5)
                module.bias.zero_()
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.zero_()
                uniform(module.running_var, 0.5, 2.0)
        if hasattr(module, "layer_scale") and isinstance(module.layer_scale, Tensor):
            uniform(module.layer_scale, 0.5, 1.5)  # ConvNeXt: torchvision starts at 1e-6
    rescale(model, x)
    return model


@torch.no_grad()
def rescale(model: nn.Module, x: Tensor) -> None:
    """Divide each Conv/Linear weight by the RMS of its output on ``x``, in one forward pass.

    The layers have no bias, so dividing the weight divides the output: a forward hook scales
    the weight and returns the scaled output, and the layers below see the rescaled model.
    """

    def hook(module: nn.Module, _: object, out: Tensor) -> Tensor:
        rms = out.pow(2).mean().sqrt()
        if rms > 0:
            module.weight.div_(rms)
            return out / rms
        return out

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()


def build(
    name: str,
    *,
    size: int | None = None,
    n: int = 1,
    dtype: torch.dtype = torch.float64,
    classes: int = 10,
    aux_logits: bool = False,
    hidden: int | None = 512,
    seed: int = 0,
) -> ZooCase:
    """Model ``name`` of the zoo, re-initialised as the module docstring says, and its input."""
    torch.manual_seed(seed)
    model = construct(name, classes, aux_logits, hidden).to(torch.float64)
    x = zoo_input(size or ZOO[name], n)
    reinitialise(model, x, seed)
    model = model.to(dtype)
    x = x.to(dtype)
    with torch.no_grad():
        target = int(model(x)[0].argmax())
    return ZooCase(name, model, x, target)


@dataclass
class ZooReport:
    """What the coverage matrix measures on one model (see :func:`measure`)."""

    name: str
    logit: float  # the explained logit (sample 0)
    lrp_sum: float  # Σ input relevance of the target kind (plain LRP of the logit)
    dual_sum: float  # Σ input relevance of CLRP1's dual (seed S/(C-1) on the others: sums to S)
    layers: list[str]  # captured layers, in forward order
    warnings: list[str]  # ConservationWarning messages of the calls
    clrp1: Tensor  # CLRP1 map max(0, R - R_dual) at the input (sample 0)
    clrp2: Tensor | None  # CLRP2 map, None where the engine refused CLRP2 (see clrp2_refusal)
    clrp2_refusal: str  # the ConfigError's message where CLRP2 was refused, else ""
    conditional_layer: str
    conditional_sums: list[float]  # Σ of each channel's conditional map
    channel_relevance: list[float]  # the channel's LRP relevance at the layer

    @property
    def conservation_error(self) -> float:
        """Largest relative error of Σ input relevance against the explained logit."""
        return max(abs(s - self.logit) for s in (self.lrp_sum, self.dual_sum)) / abs(self.logit)

    @property
    def conditional_error(self) -> float:
        """Largest error of a conditional map's sum against its channel's relevance."""
        pairs = zip(self.conditional_sums, self.channel_relevance, strict=True)
        return max(abs(s - r) for s, r in pairs) / abs(self.logit)

    @property
    def op_layers(self) -> list[str]:
        """Captured op-level layers (``<module path>:<op>``)."""
        return [n for n in self.layers if ":" in n]


def _middle_conv_layer(tree: object, order: list[str]) -> str:
    """The captured layer with a channel axis nearest the middle of the forward order."""
    spatial = [n for n in order if tree["layers"][n]["relevance"].ndim == 5]  # type: ignore[index]
    return spatial[len(spatial) // 2]


def _map(contrast: object) -> Tensor:
    """The clipped CLRP map of an unclipped contrast array."""
    return torch.as_tensor(contrast).clamp(min=0)


def measure(case: ZooCase, channels: int = 3) -> ZooReport:
    """Explain ``case`` with the paper preset: LRP, CLRP1 (all layers), CLRP2, conditional maps.

    The conditional maps are those of the LRP decision (contrast="lrp") at the middle layer,
    for its ``channels`` most relevant channels: deep in a z+ chain the CLRP contrast of random
    weights fades to ~1e-7 of the logit (the class-blindness CLRP corrects), too small to test.

    ConservationWarnings are recorded, not raised; other warnings pass through.
    """
    import warnings

    import clrp_widgets as cw
    from clrp_widgets.engine.errors import ConfigError

    ex = cw.Explainer(case.model, input_bounds=BOUNDS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tree = ex.explain(case.x, case.target, contrast="clrp1", layers="all")
        clrp2, refusal = None, ""
        try:
            clrp2 = ex.explain(case.x, case.target, "clrp2", layers=None, kinds=("contrast",))
        except ConfigError as err:  # no Linear logit layer for the virtual row -W_j
            refusal = str(err)
        order = [n for n in ex.layer_names if n in tree["layers"].children]
        layer = _middle_conv_layer(tree, order)
        neuron = tree["layers"][layer]["neuron_relevance"].sel(kind="target").values[0]
        top = [int(c) for c in abs(neuron).argsort()[::-1][:channels]]
        cond = ex.conditional(case.x, case.target, layer, top, contrast="lrp")
    ours = [w for w in caught if w.category.__name__ == "ConservationWarning"]
    for w in caught:
        if w not in ours:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    rel = tree["input"]["relevance"]
    return ZooReport(
        name=case.name,
        logit=float(tree["logits"].values[0, case.target]),
        lrp_sum=float(rel.sel(kind="target").values[0].sum()),
        dual_sum=float(rel.sel(kind="dual").values[0].sum()),
        layers=order,
        warnings=[str(w.message) for w in ours],
        clrp1=_map(rel.sel(kind="contrast").values[0]),
        clrp2=None if clrp2 is None else _map(clrp2["input"]["relevance"].values[0, 0]),
        clrp2_refusal=refusal,
        conditional_layer=layer,
        conditional_sums=cond.values[:, 0].sum(axis=(1, 2)).tolist(),
        channel_relevance=[float(neuron[c]) for c in top],
    )
