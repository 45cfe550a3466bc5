"""Train the shipped "shapes_vit" model: ``python -m clrp_widgets.models.train_shapes_vit``.

The protocol is the shapes CNN's (:mod:`clrp_widgets.models.train_shapes`): every batch of
training scenes is fresh, chunk ``i`` is ``scenes(CHUNK, seed=TRAIN_SEED0 + i)``, so the training
seeds are ``TRAIN_SEED0`` … ``TRAIN_SEED0 + chunks - 1`` (recorded in the weights' metadata and
in ``weights/shapes_vit.json``); any seed below ``TRAIN_SEED0`` is unseen, and the reported
accuracy uses ``scenes(2000, seed=EVAL_SEED)``, the CNN's evaluation scenes. Torch's seed is
fixed; AdamW with a one-cycle learning rate and gradient clipping. The metadata records the wall
time and the process's CPU time (user + system, all threads) of the training loop.

The shipped weights: 1,500 steps of 64 scenes (lr 1e-3), training seeds 1,000,000 to 1,000,093,
exact-match 0.498 on 2,000 scenes of seed 424,242 (0.90 of single labels right; the shapes CNN:
0.999). The training loop took 602 s of CPU time (10.0 core-minutes, i.e. about 5 min on 2 free
cores) and 888 s wall on 2 cores shared with other jobs (load average about 7), run as
``GOMP_SPINCOUNT=0 python -m clrp_widgets.models.train_shapes_vit`` (2 threads; OpenMP's
spin-waiting on a loaded machine otherwise counts as CPU time: an earlier 2-thread run without it,
of the cheaper patch-projection model, spent 1.3 s of CPU per step, this one 0.4 s).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from pathlib import Path

import torch
from torch import nn

from clrp_widgets.models.scenes import CLASS_NAMES, scenes
from clrp_widgets.models.shapes_vit import architecture, shapes_vit
from clrp_widgets.models.train_shapes import (
    CHUNK,
    EVAL_N,
    EVAL_SEED,
    TRAIN_SEED0,
    VAL_SEED,
    exact_match,
    fresh_batches,
    save,
)

WEIGHTS = Path(__file__).with_name("weights") / "shapes_vit.pt"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train(
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    checkpoint: Path | None = None,
    config: dict | None = None,
    val_every: int = 250,
) -> tuple[nn.Module, dict]:
    """Train on fresh scenes; returns the model in eval mode and its metadata.

    ``config`` replaces parts of the shipped :func:`architecture`. At each validation (every
    ``val_every`` steps) the model so far is written to ``checkpoint`` (if given).
    """
    torch.manual_seed(seed)
    arch = {**architecture(), **(config or {})}
    model = shapes_vit(len(CLASS_NAMES), **arch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    val = scenes(500, seed=VAL_SEED)
    chunks = math.ceil(steps / (CHUNK // batch))
    start, cpu0 = time.perf_counter(), _cpu_seconds()
    for step, xb, yb in fresh_batches(steps, batch):
        loss = nn.functional.binary_cross_entropy_with_logits(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % val_every == 0 or step == steps - 1:
            model.eval()
            acc = exact_match(model, val.tensor(), val.label_tensor())
            if checkpoint is not None:
                save(model, {"vit": arch, "partial_step": step}, checkpoint)
            model.train()
            print(
                f"step {step:5d}  loss {loss.item():.4f}  val {acc:.3f}  "
                f"{time.perf_counter() - start:6.0f} s wall  {_cpu_seconds() - cpu0:6.0f} s CPU",
                flush=True,
            )
    meta = {
        "vit": arch,
        "train_seed_first": TRAIN_SEED0,
        "train_seed_last": TRAIN_SEED0 + chunks - 1,
        "scenes_per_seed": CHUNK,
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "torch_seed": seed,
        "torch_threads": torch.get_num_threads(),
        "train_seconds": round(time.perf_counter() - start, 1),
        "train_cpu_seconds": round(_cpu_seconds() - cpu0, 1),
    }
    return model.eval(), meta


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: train, evaluate on an unseen seed, write weights and a json summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--eval-n", type=int, default=EVAL_N)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, meta = train(args.steps, args.batch, args.lr, args.seed, checkpoint=args.out)
    test = scenes(args.eval_n, seed=EVAL_SEED)
    meta["eval_seed"] = EVAL_SEED
    meta["eval_n"] = args.eval_n
    meta["eval_exact_match"] = round(exact_match(model, test.tensor(), test.label_tensor()), 4)
    print(json.dumps(meta, indent=1))
    meta = save(model, meta, args.out)
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
