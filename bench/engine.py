"""Engine benchmark (issue 2, Part 7): ratios against a plain gradient measured in the same run.

VGG16 with random weights, input (B, 3, 224, 224). Methods run interleaved round by round so that
load from other processes hits all of them alike (in a new order each round, so that no row always
follows a heavy one); each figure is the median over the rounds.

    .venv/bin/python bench/engine.py                 # CPU, 2 threads, 15 rounds
    .venv/bin/python bench/engine.py --device cuda --batch 16
    .venv/bin/python bench/engine.py --zoo --rounds 5   # issue 9: beyond VGG16 (rows below)
    .venv/bin/python bench/engine.py --vit --rounds 5   # issue 13: vit_b_16 vs gradient and LXT

Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torchvision

BOUNDS = (-2.1179, 2.64)
TARGET = 3


def build(device: str, batch: int) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = torchvision.models.vgg16().eval().to(device)
    x = torch.randn(batch, 3, 224, 224, device=device).clamp(*BOUNDS)
    return model, x


def methods(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat, SpecialFirstLayerMapComposite
    from zennit.rules import Pass, ZBox, ZPlus
    from zennit.types import Activation, Convolution, Linear

    import clrp_widgets as cw
    from clrp_widgets.engine import RelevanceEngine
    from clrp_widgets.engine.fingerprint import weights_fingerprint

    # one-shot maps (as cw.clrp makes them) and the widgets' engine, which keeps its denominators
    engine = RelevanceEngine(model, input_bounds=BOUNDS, keep_denominators=False)
    widget_engine = RelevanceEngine(model, input_bounds=BOUNDS)
    n = x.shape[0]

    def gradient() -> object:
        xx = x.clone().requires_grad_(True)
        return torch.autograd.grad(model(xx)[:, TARGET].sum(), xx)

    def gradient_with_param_grads() -> object:
        xx = x.clone().requires_grad_(True)
        model(xx)[:, TARGET].sum().backward()  # torchvision's default: parameters need grad too
        model.zero_grad(set_to_none=True)  # its 528 MB of parameter grads must not slow the rows
        return xx.grad  # timed after it (they did: ~0.08x on the contrast row)

    def clrp_contrast() -> object:
        engine.clear_cache()
        return engine.run(x, TARGET, "clrp1", kinds=("contrast",))

    def clrp_three_kinds() -> object:
        engine.clear_cache()
        return engine.run(x, TARGET, "clrp1", kinds=("target", "dual", "contrast"))

    again = [0]

    def clrp_same_image_again() -> object:  # two targets in turn: a repeated request costs nothing
        again[0] = 1 - again[0]
        return widget_engine.run(x, TARGET + 1 + again[0], "clrp1", kinds=("contrast",))

    def functional_clrp() -> object:  # the per-model memo engine, forward dropped after each call
        return cw.clrp(model, x, TARGET, input_bounds=BOUNDS)

    def fingerprint() -> object:  # the weights check each engine call makes (issue 10)
        return weights_fingerprint(model)

    def zennit_flat() -> object:
        seeds = torch.zeros(n, 1000, device=x.device)
        seeds[:, TARGET] = 1.0
        with Gradient(model, EpsilonPlusFlat()) as attributor:
            return attributor(x.clone().requires_grad_(True), seeds)

    paper = SpecialFirstLayerMapComposite(
        layer_map=[(Activation, Pass()), (Linear, ZPlus(stabilizer=1e-9))],
        first_map=[(Convolution, ZBox(*BOUNDS, stabilizer=1e-9))],
    )

    def zennit_two_pass_clrp() -> object:
        with torch.no_grad():
            logits = model(x)
        s = logits[:, TARGET : TARGET + 1]
        seed_t = torch.zeros_like(logits)
        seed_t[:, TARGET] = s[:, 0]
        seed_d = (s / 999).expand_as(logits).clone()
        seed_d[:, TARGET] = 0
        with Gradient(model, paper) as attributor:
            _, r_t = attributor(x.clone().requires_grad_(True), seed_t)
            _, r_d = attributor(x.clone().requires_grad_(True), seed_d)
        return (r_t - r_d).clamp(min=0)

    floor = hand_written_zplus(model, x)

    def conditional_1() -> object:
        engine.clear_cache()
        return engine.conditional(x, TARGET, "features.28", [0])

    def conditional_64() -> object:
        engine.clear_cache()
        return engine.conditional(x, TARGET, "features.28", list(range(64)))

    return {
        "clear_cache": engine.clear_cache,
        "gradient": gradient,
        "gradient_with_param_grads": gradient_with_param_grads,
        "clrp_contrast": clrp_contrast,
        "clrp_three_kinds": clrp_three_kinds,
        "clrp_same_image_again": clrp_same_image_again,
        "functional_clrp": functional_clrp,
        "fingerprint": fingerprint,
        "zennit_epsilon_plus_flat": zennit_flat,
        "zennit_two_pass_clrp": zennit_two_pass_clrp,
        "conditional_1": conditional_1,
        "conditional_64": conditional_64,
        "hand_written_floor": floor,
    }


def hand_written_zplus(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """The floor: VGG16's contrast map written out by hand (no hooks, op interception, ledger or
    checks): forward; then per layer z+ denominators, the quotient written into them, one
    transposed convolution and a product (zB on the first layer with two transposed passes,
    winner-takes-all max-pooling), as the engine's rules compute them."""
    import torch.nn.functional as F

    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    dense = [m for m in model.classifier if isinstance(m, torch.nn.Linear)]
    wp = {m: m.weight.detach().clamp(min=0) for m in convs + dense}
    eps = {m: torch.full_like(m.bias, 1e-9).detach() for m in convs + dense}
    first = convs[0].weight.detach()
    low, high = torch.full_like(x, BOUNDS[0]), torch.full_like(x, BOUNDS[1])
    offset = F.conv2d(low, first.clamp(min=0), padding=1)
    offset += F.conv2d(high, first.clamp(max=0), padding=1)
    stacked = torch.cat([first.clamp(min=0), first.clamp(max=0)], 1)  # w = w+ + w-: two passes

    def transpose(s: torch.Tensor, w: torch.Tensor, layout: torch.Tensor) -> torch.Tensor:
        # ``layout``: a tensor of the result's shape (the layer input: oneDNN copies a stand-in)
        pad = [1, 1]
        return torch.ops.aten.convolution_backward(
            s, layout, w, None, [1, 1], pad, [1, 1], False, [0, 0], 1, [True, False, False]
        )[0]

    def run() -> object:
        with torch.no_grad():
            trail, h, pooled = [], x, x
            for m in [*model.features, model.avgpool, *model.classifier]:
                if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                    trail.append((m, h))
                    h = m(h)
                elif isinstance(m, torch.nn.ReLU):
                    h = F.relu(h)
                elif isinstance(m, torch.nn.MaxPool2d):
                    out, idx = F.max_pool2d(h, 2, 2, return_indices=True)
                    trail.append((idx, h.shape))
                    h = out
                elif m is model.avgpool:
                    pooled = m(h)
                    h = torch.flatten(pooled, 1)  # dropout (eval): identity
            logit = h[:, TARGET : TARGET + 1]  # CLRP1's contrast seed: the logit on the target,
            R = (-logit / (h.shape[1] - 1)).expand_as(h).clone()  # minus its share on the others
            R[:, TARGET] = logit[:, 0]
            for m, a in reversed(trail):
                if isinstance(m, torch.nn.Linear):
                    R = ((R.flatten(1) / F.linear(a, wp[m], eps[m])) @ wp[m]).mul_(a)
                elif isinstance(m, torch.Tensor):  # max-pooling: indices, input shape
                    R = R.reshape(pooled.shape) if R.ndim == 2 else R
                    R = F.max_unpool2d(R, m, 2, 2, output_size=a[2:])
                elif m is convs[0]:
                    layout = a.new_empty(a.shape[0], 6, *a.shape[2:])
                    g = transpose(R / (F.conv2d(a, first, padding=1) - offset), stacked, layout)
                    R = (a - low) * g[:, :3] + (a - high) * g[:, 3:]
                else:
                    den = F.conv2d(a, wp[m], eps[m], padding=1)
                    R = transpose(torch.div(R, den, out=den), wp[m], a).mul_(a)
            return R

    return run


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


#: the fastest round of each method in the last time_rounds (less sensitive to other load)
FASTEST: dict[str, float] = {}
#: per method of the last time_rounds: its time over the gradient's in the same round, per round
PAIRED: dict[str, list[float]] = {}


def time_rounds(names: list[str], device: str, batch: int, rounds: int) -> dict[str, float]:
    model, x = build(device, batch)
    fns = methods(model, x)
    for name in names:  # warm-up: caches, allocator, lazy init
        fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    order = random.Random(0)
    for _ in range(rounds):  # each round in a new order: no row always follows a heavy one
        for name in order.sample(names, len(names)):
            sync(device)
            start = time.perf_counter()
            fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    FASTEST.update({name: min(t) for name, t in times.items()})
    if "gradient" in times:
        grad = times["gradient"]
        PAIRED.update({n: [a / b for a, b in zip(t, grad, strict=True)] for n, t in times.items()})
    return {name: statistics.median(t) for name, t in times.items()}


def paired(name: str, ratios: dict[str, list[float]]) -> str:
    """Median and quartiles of a method's per-round ratio to the gradient of the same round."""
    r = ratios[name]
    if len(r) < 4:
        return f"{statistics.median(r):.2f}x"
    q1, q2, q3 = statistics.quantiles(r, n=4)
    return f"{q2:.2f}x ({q1:.2f}-{q3:.2f})"


def rss_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def peak_memory(name: str, device: str, batch: int) -> tuple[int, int]:
    """(persistent, peak) extra memory of ``name`` in bytes, measured in a fresh process.

    persistent: what the first call leaves allocated (the engine's cached modified weights);
    peak: the extra peak of a later call on a new input (the forward cache dropped first).
    """
    model, x = build(device, batch)
    fns = methods(model, x)
    cuda = device.startswith("cuda")
    before = torch.cuda.memory_allocated() if cuda else rss_bytes("VmRSS")
    fns[name]()
    fns["clear_cache"]()
    if cuda:
        torch.cuda.synchronize()
        persistent = torch.cuda.memory_allocated() - before
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fns[name]()
        torch.cuda.synchronize()
        return persistent, torch.cuda.max_memory_allocated() - base
    persistent = rss_bytes("VmRSS") - before
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set size (VmHWM)
    base = rss_bytes("VmRSS")
    fns[name]()
    return persistent, rss_bytes("VmHWM") - base


# ----------------------------------------------------------------------------- issue 9: the zoo

#: Models of the zoo rows, with the zennit canonizers of their closest EpsilonPlusFlat setup.
ZOO_MODELS = ("vgg16", "resnet50", "densenet121", "efficientnet_b0", "convnext_tiny")


def zoo_methods(name: str, device: str, batch: int) -> dict[str, Callable[[], object]]:
    """Input gradient, CLRP contrast map and zennit EpsilonPlusFlat (where zennit runs)."""
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    from clrp_widgets.engine import RelevanceEngine

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "engine"))
    from zoo_models import rescale

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    x = torch.randn(batch, 3, 224, 224).clamp(*BOUNDS)
    # torchvision's initialisation shrinks EfficientNet's and ConvNeXt's logits to ~1e-14 and
    # their relevance to denormals (slow arithmetic, below the rules' stabiliser): every layer's
    # weight is divided by the RMS of its output on x, so activations stay of order 1
    rescale(model, x)
    model, x = model.to(device), x.to(device)
    engine = RelevanceEngine(model, input_bounds=BOUNDS, keep_denominators=False)
    canonizers = {
        "vgg16": [VGGCanonizer()],
        "resnet50": [ResNetCanonizer()],
        "densenet121": [],  # BatchNorm before conv: nothing to merge
    }
    composite = EpsilonPlusFlat(canonizers=canonizers.get(name, [SequentialMergeBatchNorm()]))

    def gradient() -> object:
        xx = x.clone().requires_grad_(True)
        return torch.autograd.grad(model(xx)[:, TARGET].sum(), xx)

    def clrp_contrast() -> object:
        engine.clear_cache()
        return engine.run(x, TARGET, "clrp1", kinds=("contrast",))

    def zennit_flat() -> object:
        seeds = torch.zeros(batch, 1000, device=device)
        seeds[:, TARGET] = 1.0
        with Gradient(model, composite) as attributor:
            return attributor(x.clone().requires_grad_(True), seeds)

    fns = {"gradient": gradient, "clrp_contrast": clrp_contrast, "zennit": zennit_flat}
    try:  # on a copy: a canonizer that fails half-way may leave its model changed
        with Gradient(copy.deepcopy(model), composite) as attributor:
            attributor(x[:1].clone().requires_grad_(True), torch.eye(1000, device=device)[:1])
    except Exception as err:  # zennit does not run on this model: no zennit column
        print(f"zennit EpsilonPlusFlat does not run on {name}: {type(err).__name__}: {err}")
        del fns["zennit"]
    return fns


def zoo_rows(device: str, batch: int, rounds: int) -> None:
    """One row per model: CLRP contrast map vs a plain input gradient and vs zennit.

    All models' methods run interleaved, round by round, models and each model's methods in a new
    order each round, so load from other processes hits every ratio alike; each figure is the
    median over rounds, and "paired" the median of each round's ratio to that round's gradient.
    """
    fns = {name: zoo_methods(name, device, batch) for name in ZOO_MODELS}
    for methods_of in fns.values():  # warm-up: caches, allocator, lazy init
        for fn in methods_of.values():
            fn()
    times: dict[tuple[str, str], list[float]] = {}
    order = random.Random(0)
    for _ in range(rounds):
        for name in order.sample(list(fns), len(fns)):
            methods_of = fns[name]
            for method in order.sample(list(methods_of), len(methods_of)):
                sync(device)
                start = time.perf_counter()
                methods_of[method]()
                sync(device)
                times.setdefault((name, method), []).append(time.perf_counter() - start)
    med = {key: statistics.median(t) for key, t in times.items()}
    pairs = {
        (name, method): [a / b for a, b in zip(t, times[(name, "gradient")], strict=True)]
        for (name, method), t in times.items()
    }
    print(f"\nzoo, random weights, batch {batch}, 224 px, float32, {device}, median of {rounds}")
    print(
        "| model | gradient (s) | CLRP contrast (s) | vs gradient | paired | zennit "
        "EpsilonPlusFlat (s) | CLRP vs zennit |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in ZOO_MODELS:
        g, c = med[(name, "gradient")], med[(name, "clrp_contrast")]
        pair = paired(name, {name: pairs[(name, "clrp_contrast")]})
        z = med.get((name, "zennit"))
        zennit = f"{z:.3f} | {z / c:.2f}x faster" if z is not None else "does not run | -"
        print(f"| {name} | {g:.3f} | {c:.3f} | **{c / g:.2f}x** | {pair} | {zennit} |")


# ----------------------------------------------------------------------------- issue 13: ViT


def vit_methods(device: str, batch: int) -> dict[str, Callable[[], object]]:
    """vit_b_16 (random weights, 224 px): input gradient, our maps, and LXT 2.1 (CP-LRP).

    LXT patches ``nn.GELU``, ``nn.LayerNorm`` and ``nn.MultiheadAttention`` class-wide; its
    patched forwards are installed only while its own call runs and the originals are put back
    after it, so the other methods of the interleaved rounds see the plain classes.
    """
    from torch import nn
    from torchvision.models import vision_transformer

    from clrp_widgets.engine import RelevanceEngine

    torch.manual_seed(0)
    model = vision_transformer.vit_b_16().eval().to(device)
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zeroes the head
    x = torch.rand(batch, 3, 224, 224, device=device)
    engines = {
        rules: RelevanceEngine(model, rules=rules, input_bounds=(0, 1), keep_denominators=False)
        for rules in ("cp_lrp", "attnlrp")
    }

    def gradient() -> object:
        xx = x.clone().requires_grad_(True)
        return torch.autograd.grad(model(xx)[:, TARGET].sum(), xx)

    def ours(rules: str, contrast: str) -> Callable[[], object]:
        def run() -> object:
            engines[rules].clear_cache()
            return engines[rules].run(x, TARGET, contrast)

        return run

    fns = {
        "gradient": gradient,
        "cp_lrp_lrp": ours("cp_lrp", "lrp"),
        "cp_lrp_clrp1": ours("cp_lrp", "clrp1"),
        "attnlrp_clrp1": ours("attnlrp", "clrp1"),
    }
    classes = (nn.GELU, nn.LayerNorm, nn.MultiheadAttention)
    original = {cls: cls.forward for cls in classes}
    try:
        from lxt.efficient import monkey_patch
    except ImportError as err:
        print(f"LXT is not importable ({err}); no LXT column (pip install -e '.[test]')")
        return fns
    try:
        monkey_patch(vision_transformer)
        patched = {cls: cls.forward for cls in classes}
    finally:
        for cls, forward in original.items():
            cls.forward = forward  # type: ignore[method-assign]

    def lxt_cp_lrp() -> object:
        try:
            for cls, forward in patched.items():
                cls.forward = forward  # type: ignore[method-assign]
            xx = x.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(model(xx)[:, TARGET].sum(), xx)
            return xx.detach() * grad
        finally:
            for cls, forward in original.items():
                cls.forward = forward  # type: ignore[method-assign]

    fns["lxt_cp_lrp"] = lxt_cp_lrp
    return fns


def vit_rows(device: str, batch: int, rounds: int) -> None:
    """vit_b_16: our AttnLRP/CP-LRP maps vs a gradient and vs LXT, interleaved round by round."""
    fns = vit_methods(device, batch)
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(t) for name, t in times.items()}
    g, lxt = med["gradient"], med.get("lxt_cp_lrp")
    print(f"\nvit_b_16, random weights, batch {batch}, 224 px, float32, {device}, ", end="")
    print(f"median of {rounds}")
    print("| measurement | time (s) | vs gradient | vs LXT 2.1 (CP-LRP, LRP map) |")
    print("|---|---|---|---|")
    rows = [
        ("plain input gradient", "gradient"),
        ("LXT 2.1, CP-LRP, LRP map (Gradient x Input)", "lxt_cp_lrp"),
        ('ours, rules="cp_lrp", LRP map', "cp_lrp_lrp"),
        ('ours, rules="cp_lrp", CLRP1 contrast map', "cp_lrp_clrp1"),
        ('ours, rules="attnlrp", CLRP1 contrast map', "attnlrp_clrp1"),
    ]
    for label, name in rows:
        if name not in med:
            continue
        t = med[name]
        vs_lxt = f"{t / lxt:.2f}x" if lxt else "-"
        print(f"| {label} | {t:.3f} | {t / g:.2f}x | {vs_lxt} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--conditional-rounds", type=int, default=3)
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    parser.add_argument("--zoo", action="store_true", help="only the issue-9 zoo rows")
    parser.add_argument("--vit", action="store_true", help="only the issue-13 vit_b_16 rows")
    parser.add_argument(
        "--quick", action="store_true", help="only the rows against the gradient (no zennit/memory)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.zoo:
        zoo_rows(args.device, args.batch, args.rounds)
        return
    if args.vit:
        vit_rows(args.device, args.batch, args.rounds)
        return
    if args.memory_of:
        print(*peak_memory(args.memory_of, args.device, args.batch))
        return

    # Rows that allocate and free hundreds of MB (parameter grads, zennit's passes) make the
    # allocator hand memory back to the OS, and every row after them pays page faults (about
    # +0.15x on the contrast map): they run in a second set of rounds, each with the gradient
    # and the contrast map it is compared with.
    main_names = [
        "gradient",
        "clrp_contrast",
        "clrp_three_kinds",
        "clrp_same_image_again",
        "functional_clrp",
        "fingerprint",
        "hand_written_floor",
    ]
    med = time_rounds(main_names, args.device, args.batch, args.rounds)
    fastest, pairs = dict(FASTEST), dict(PAIRED)
    references = ["gradient_with_param_grads"]
    if not args.quick:
        references += ["zennit_epsilon_plus_flat", "zennit_two_pass_clrp"]
    ref = time_rounds(
        ["gradient", "clrp_contrast", *references], args.device, args.batch, args.rounds
    )
    ref_fastest, ref_pairs = dict(FASTEST), dict(PAIRED)
    cond_rounds = 0 if args.quick else args.conditional_rounds
    cond = {}
    if cond_rounds > 0:
        names = ["conditional_1", "conditional_64"]
        cond = time_rounds(names, args.device, args.batch, cond_rounds)
    mem = {}
    for name in () if args.quick else ("gradient", "clrp_contrast", "clrp_three_kinds"):
        cmd = [sys.executable, __file__, "--memory-of", name, "--device", args.device]
        cmd += ["--batch", str(args.batch), "--threads", str(args.threads)]
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}  # big blocks go back to the OS
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
        mem[name] = tuple(int(v) for v in out.split())

    g = med["gradient"]
    gb = med["gradient"] * ref["gradient_with_param_grads"] / ref["gradient"]
    print(f"VGG16 random weights, batch {args.batch}, {args.device}, {args.threads} threads,")
    print(f"median of {args.rounds} interleaved rounds ({cond_rounds} for conditional maps);")
    print("reference rows (param grads, zennit) in their own rounds, with their own gradient;")
    print("paired: median (quartiles) over rounds of the time over the same round's gradient\n")
    print(
        "| measurement | time (s) | vs gradient | paired | fastest rounds' ratio | vs gradient + "
        "param grads | target |"
    )
    print("|---|---|---|---|---|---|---|")
    rows = [
        ("plain gradient (input only)", "gradient", "1.0x"),
        ("plain gradient, .backward() with parameter grads", "gradient_with_param_grads", "-"),
        ("CLRP contrast map alone", "clrp_contrast", "<= 1.55x"),
        ("target + dual + contrast", "clrp_three_kinds", "<= 2x"),
        ("CLRP again on the same image (cached forward)", "clrp_same_image_again", "-"),
        ("functional API: cw.clrp in a loop (memo engine)", "functional_clrp", "<= 1.55x"),
        ("weights fingerprint (part of every call above)", "fingerprint", "report"),
        ("floor: the contrast map's z+ pass written by hand", "hand_written_floor", "report"),
        ("zennit EpsilonPlusFlat, one class", "zennit_epsilon_plus_flat", "CLRP >= 2x faster"),
        ("zennit naive two-pass CLRP", "zennit_two_pass_clrp", "report"),
    ]
    for label, key, target in rows:
        if key in med:
            t, ratio, low = med[key], med[key] / g, fastest[key] / fastest["gradient"]
            pair = paired(key, pairs)
        elif key in ref:
            t, ratio = ref[key], ref[key] / ref["gradient"]
            low = ref_fastest[key] / ref_fastest["gradient"]
            pair = paired(key, ref_pairs)
        else:
            continue
        print(
            f"| {label} | {t:.3f} | {ratio:.2f}x | {pair} | {low:.2f}x | {ratio * g / gb:.2f}x "
            f"| {target} |"
        )
    if cond:
        c1, c64 = cond["conditional_1"], cond["conditional_64"]
        print(
            f"| 64 conditional maps at features.28 / one map | {c64:.3f} / {c1:.3f} | "
            f"{c64 / c1:.1f}x (of one map) | | | <= 24x |"
        )
    print()
    if args.quick:
        return
    speed_flat = ref["zennit_epsilon_plus_flat"] / ref["clrp_contrast"]
    speed_two = ref["zennit_two_pass_clrp"] / ref["clrp_contrast"]
    print(
        f"CLRP is {speed_flat:.2f}x faster than zennit EpsilonPlusFlat (one class), "
        f"{speed_two:.2f}x faster than naive two-pass zennit CLRP."
    )
    peak = {k: v[1] for k, v in mem.items()}
    mib = {k: f"{v / 2**20:.0f} MiB" for k, v in peak.items()}
    print(
        f"peak extra memory per call: gradient (input only) {mib['gradient']}, CLRP contrast "
        f"{mib['clrp_contrast']} "
        f"({peak['clrp_contrast'] / peak['gradient']:.2f}x gradient, target <= 2x), three kinds "
        f"{mib['clrp_three_kinds']} ({peak['clrp_three_kinds'] / peak['gradient']:.2f}x)"
    )
    weights = sum(p.numel() * p.element_size() for p in build("cpu", 1)[0].parameters())
    print(
        f"persistent engine cache (modified weights): {mem['clrp_contrast'][0] / 2**20:.0f} MiB "
        f"(model weights: {weights / 2**20:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
