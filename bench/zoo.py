"""The "Supported models" table of README.md, measured: the coverage matrix of issue 9.

Builds every model of ``tests/engine/zoo_models.ZOO`` as the tests do (random weights, zero
biases and shifts, activations of order 1, float64, small input), explains it with the paper
preset (``zoo_models.measure``: LRP, CLRP1 over all layers, CLRP2, conditional maps) and prints
one markdown row per model:

- **exact**: the input relevance sums to the logit within 1e-6 (LRP and CLRP1's dual), no
  ConservationWarning, CLRP1 and CLRP2 maps finite and non-zero, and conditional maps that sum
  to their channel's relevance within 1e-6;
- **approximate**: explained, but one of these fails (the row says which, by how much);
- **refused**: the engine raised a clear error (the row gives it).

    PYTHONPATH=$PWD .venv/bin/python bench/zoo.py [--models resnet18 densenet121]

``--timm`` and ``--hf`` print the matrix of models nobody here wrote instead (issue 20,
``tests/engine/zoo_external.py``): every timm model of the matrix and every Hugging Face image
classifier family that builds from a config, CNNs under ``"paper"`` and models with attention
under both ``"paper"`` and ``"attnlrp"``.

Not a test: ``tests/engine/test_zoo.py``, ``test_zoo_timm.py`` and ``test_zoo_hf.py`` assert
the same figures.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "engine"))
from zoo_models import ZOO, ZooReport, build, measure

TOL = 1e-6


def verdict(report: ZooReport) -> tuple[str, str]:
    """("exact" | "approximate", why) from the measured figures."""
    why = []
    if report.conservation_error > TOL:
        why.append(f"input relevance off the logit by {report.conservation_error:.1e}")
    if report.warnings:
        layers = sorted({w.split("'")[1] for w in report.warnings if "'" in w})
        why.append(f"ConservationWarning at {', '.join(layers) or 'a layer'}")
    for name in ("clrp1", "clrp2"):
        heat = getattr(report, name)
        if heat is not None and (not torch.isfinite(heat).all() or heat.max() <= 0):
            why.append(f"{name.upper()} map not finite or all zero")
    if report.conditional_error > TOL:
        why.append(f"conditional maps off by {report.conditional_error:.1e}")
    return ("approximate", "; ".join(why)) if why else ("exact", "")


def row(name: str) -> str:
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = measure(build(name))
    except Exception as err:
        first = str(err).split(". ")[0].replace("|", "/")
        return f"| {name} | refused | {type(err).__name__}: {first} | | | |"
    seconds = time.perf_counter() - start
    status, why = verdict(report)
    clrp2 = "yes" if report.clrp2 is not None else "refused: " + report.clrp2_refusal.split(";")[0]
    return (
        f"| {name} | {status} | {why} | {report.conservation_error:.0e} | "
        f"{len(report.op_layers)} | {clrp2} | {ZOO[name]} px, {seconds:.1f} s |"
    )


def external_rows(library: str, names: list[str]) -> list[str]:
    """One row per model and preset of the timm / Hugging Face matrix."""
    import zoo_external as zx

    attention = set(zx.TIMM_ATTENTION) | zx.HF_ATTENTION
    build = zx.build_timm if library == "timm" else zx.build_hf
    rows = []
    for name in names:
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                case = build(name)
        except Exception as err:  # the architecture does not build: not ours to explain
            rows.append(f"| {name} | {library} | | not built | {type(err).__name__}: {err} |||")
            print(rows[-1], flush=True)
            continue
        built = time.perf_counter() - start
        for rules in ("paper", "attnlrp") if name in attention else ("paper",):
            report = zx.measure(case, rules)
            why = report.why.split(". ")[0].replace("|", "/")
            error = "" if report.status == "refused" else f"{report.conservation_error:.0e}"
            size = case.x.shape[-1]
            rows.append(
                f"| {name} | {library} | {rules} | {report.status} | {why} | {error} | "
                f"{report.layers} | {size} px, {built + report.seconds:.1f} s |"
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timm", action="store_true", help="the timm matrix (issue 20)")
    parser.add_argument("--hf", action="store_true", help="the Hugging Face matrix (issue 20)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.timm or args.hf:
        import zoo_external as zx

        print(
            "| model | library | rules | status | why | conservation error | layers | input, time |"
        )
        print("|---|---|---|---|---|---|---|---|")
        rows = []
        if args.timm:
            rows += external_rows("timm", args.models or [*zx.TIMM_CNN, *zx.TIMM_ATTENTION])
        if args.hf:
            rows += external_rows("hf", args.models or list(zx.HF_FAMILIES))
        counts = {
            s: sum(f"| {s} |" in r for r in rows)
            for s in ("exact", "explained", "approximate", "refused", "crash", "not built")
        }
        print("\n" + ", ".join(f"{n} {s}" for s, n in counts.items()))
        return
    print("| model | status | why | conservation error | op-level layers | CLRP2 | input, time |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models or list(ZOO):
        print(row(name), flush=True)


if __name__ == "__main__":
    main()
