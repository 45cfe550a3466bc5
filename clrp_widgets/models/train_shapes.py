"""Train the shipped "shapes" model: ``python -m clrp_widgets.models.train_shapes``.

Every batch of training scenes is fresh: chunk ``i`` is ``scenes(CHUNK, seed=TRAIN_SEED0 + i)``,
so the training data seeds are ``TRAIN_SEED0`` … ``TRAIN_SEED0 + chunks - 1`` (recorded in the
weights' metadata and in ``weights/shapes.json``). Any seed below ``TRAIN_SEED0`` is unseen; the
reported accuracy uses ``scenes(2000, seed=EVAL_SEED)``. Torch's seed is fixed and 2 CPU threads
are used, so a rerun reproduces the shipped weights up to floating-point scheduling.

The shipped weights: 1,400 steps of 64 scenes, training seeds 1,000,000 to 1,000,087 (1,024 scenes
each), exact-match 0.999 on 2,000 scenes of seed 424,242. It took 34 min wall time on 2 cores
shared with other jobs (load average about 8); its CPU time is about 16 min, i.e. about 8 min on
2 free cores.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from clrp_widgets.models.scenes import CLASS_NAMES, scenes
from clrp_widgets.models.shapes_net import ShapesNet, fold_batch_norm

TRAIN_SEED0 = 1_000_000
CHUNK = 1024
EVAL_SEED = 424_242
EVAL_N = 2000
VAL_SEED = 999_999
WEIGHTS = Path(__file__).with_name("weights") / "shapes.pt"


def exact_match(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images whose every label is right (logit > 0 means present)."""
    with torch.no_grad():
        pred = torch.cat([model(part) > 0 for part in x.split(500)])
    return float((pred == labels.bool()).all(dim=1).float().mean())


def fresh_batches(steps: int, batch: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(step, images, labels)``: chunk ``i`` is ``scenes(CHUNK, seed=TRAIN_SEED0 + i)``,
    shuffled by torch's global generator and cut into batches of ``batch``."""
    per_chunk = CHUNK // batch
    for step in range(steps):
        if step % per_chunk == 0:
            data = scenes(CHUNK, seed=TRAIN_SEED0 + step // per_chunk)
            x, y = data.tensor(), data.label_tensor()
            order = torch.randperm(CHUNK)
        idx = order[(step % per_chunk) * batch : (step % per_chunk + 1) * batch]
        yield step, x[idx], y[idx]


def train(
    steps: int, batch: int, lr: float, seed: int, checkpoint: Path | None = None
) -> tuple[ShapesNet, dict]:
    """Train with batch norm, Adam and a one-cycle learning rate on fresh scenes; fold the norm.

    Returns the plain model and its metadata; at each validation the folded model so far is
    written to ``checkpoint`` (if given).
    """
    torch.manual_seed(seed)
    model = ShapesNet(len(CLASS_NAMES), batch_norm=True)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    val = scenes(500, seed=VAL_SEED)
    chunks = math.ceil(steps / (CHUNK // batch))
    start = time.perf_counter()
    for step, xb, yb in fresh_batches(steps, batch):
        loss = nn.functional.binary_cross_entropy_with_logits(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            model.eval()
            acc = exact_match(model, val.tensor(), val.label_tensor())
            if checkpoint is not None:
                save(
                    fold_batch_norm(model),
                    {"partial_step": step, "val_exact_match": acc},
                    checkpoint,
                )
            model.train()
            elapsed = time.perf_counter() - start
            print(
                f"step {step:5d}  loss {loss.item():.4f}  val {acc:.3f}  {elapsed:6.0f} s",
                flush=True,
            )
    meta = {
        "train_seed_first": TRAIN_SEED0,
        "train_seed_last": TRAIN_SEED0 + chunks - 1,
        "scenes_per_seed": CHUNK,
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "torch_seed": seed,
        "train_seconds": round(time.perf_counter() - start, 1),
    }
    return fold_batch_norm(model.eval()), meta


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: train, evaluate on an unseen seed, write weights and a json summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1400)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--eval-n", type=int, default=EVAL_N)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model, meta = train(args.steps, args.batch, args.lr, args.seed, checkpoint=args.out)
    test = scenes(args.eval_n, seed=EVAL_SEED)
    meta["eval_seed"] = EVAL_SEED
    meta["eval_n"] = args.eval_n
    meta["eval_exact_match"] = round(exact_match(model, test.tensor(), test.label_tensor()), 4)
    print(json.dumps(meta, indent=1))
    meta = save(model, meta, args.out)
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


def save(model: nn.Module, meta: dict, path: Path) -> dict:
    """Write ``{"state_dict", "meta"}`` (tensors and plain types only, for weights_only loading).

    Returns the metadata as written (with class names, input size and input bounds).
    """
    meta = {"class_names": list(CLASS_NAMES), "input_size": 64, "input_bounds": [0.0, 1.0], **meta}
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "meta": meta}, path)
    return meta


if __name__ == "__main__":
    main()
