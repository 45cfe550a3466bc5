"""Pointing game of CLRP against LRP for the shipped vision transformer, beside the shipped CNN.

The protocol is the paper reproduction's (README "Does it reproduce the paper?",
``python -m clrp_widgets.evaluate --model shapes --n 500``): the first ``--n`` generated scenes of
seed 0 (unseen by both models), every present class explained, the pointing game (15 px at 224 px,
i.e. 4.3 px at 64 px), the strict pointing game, the ablation drop and the class-pair map
correlation. Every model is run through ``cw.evaluate`` with its bundle's rules:

- ``shapes`` (CNN): ``"paper"``; LRP, CLRP1, CLRP2, SGLRP;
- ``shapes_vit``: ``"cp_lrp"`` and ``"attnlrp"``; LRP, CLRP1, SGLRP (CLRP2 is refused by these
  presets: their epsilon rule on the logit layer makes it identically zero), and LRP, CLRP2
  with the logit layer ``heads.head`` given z+ (``overrides``), as the paper's CNN rules do.

Exact-match accuracy of each model on the same scenes is printed for context, and the pointing
game is also given over the items whose class the model detects (logit > 0). No timing is
asserted; wall and CPU time of each run are printed.

    PYTHONPATH=$PWD .venv/bin/python bench/vit_pointing.py [--n 500] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import time
import warnings
from typing import Any

import numpy as np
import torch

import clrp_widgets as cw
from clrp_widgets.engine.rules import ZPlus
from clrp_widgets.models.train_shapes import exact_match

METRICS = ("pointing_game", "strict_pointing_game", "ablation", "class_sensitivity")
HEAD_ZPLUS = {"heads.head": ZPlus()}


def runs() -> list[tuple[str, Any, list[str]]]:
    """(label, bundle, methods) of every evaluation, the CNN first."""
    cnn = cw.load_model("shapes")
    vit = cw.load_model("shapes_vit")
    out: list[tuple[str, Any, list[str]]] = [
        ("shapes CNN, paper", cnn, ["lrp", "clrp1", "clrp2", "sglrp"])
    ]
    for rules in ("cp_lrp", "attnlrp"):
        vr = dataclasses.replace(vit, rules=rules)
        out.append((f"shapes_vit, {rules}", vr, ["lrp", "clrp1", "sglrp"]))
        out.append(
            (
                f"shapes_vit, {rules} + z+ head",
                dataclasses.replace(vr, overrides=HEAD_ZPLUS),
                ["lrp", "clrp2"],
            )
        )
    return out


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the scores as json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = cw.scenes(args.n, seed=args.seed)
    results: dict[str, Any] = {}
    rows = []
    for label, bundle, methods in runs():
        acc = exact_match(bundle.model, data.tensor(), data.label_tensor())
        t0, c0 = time.perf_counter(), _cpu()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", cw.ConservationWarning)
            ds = cw.evaluate(bundle, data, methods=methods, metrics=METRICS, progress=False)
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
        print(
            f"{label}: exact-match {acc:.3f}, {wall:.0f} s wall, {cpu:.0f} s CPU, "
            f"{len(caught)} ConservationWarnings",
            flush=True,
        )
        with torch.no_grad():
            logits = bundle.model(data.tensor())
        detected = (logits[ds.image.values, ds.target.values] > 0).numpy()
        for m in methods:
            s = {k: float(ds.score.sel({"method": m, "metric": k})) for k in METRICS}
            s["pointing_game_detected"] = float(
                np.nanmean(ds.pointing_game.sel({"method": m}).values[detected])
            )
            e = {k: float(ds.stderr.sel({"method": m, "metric": k})) for k in METRICS}
            results[f"{label} / {m}"] = {
                "scores": s,
                "stderr": e,
                "exact_match": acc,
                "conservation_warnings": len(caught),
            }
            cells = " | ".join(f"{s[k]:.3f} ± {e[k]:.3f}" for k in METRICS)
            hits = f"{s['pointing_game_detected']:.3f} ({detected.sum()})"
            rows.append(f"| {label} | {m.upper()} | {cells} | {hits} |")
    n_items = int(ds.sizes["item"])
    print(f"\n{args.n} scenes (seed {args.seed}), {n_items} explained (image, class) items")
    print(
        "| model, rules | method | pointing game ↑ | strict ↑ | ablation drop ↑ | corr ↓ "
        "| pointing game, detected classes only (items) |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
