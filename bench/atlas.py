"""Neuron atlas measures on the shipped "shapes" model and generated scenes.

    python bench/atlas.py [--scenes 2000] [--chunk 32] [--repeats 2] [--without OLD_TREE]
                          [--crp-python bench/.crp-venv/bin/python] [--json out.json]

1. ``explain_dataset`` with vs without the activation summaries: ``--without`` names a copy of
   the package from before them (``git archive 0fa9756 clrp_widgets | tar -x -C OLD_TREE``);
   each run is a child process with a warm 1-worker ``local_cluster`` (model loaded by a warm-up
   run), timing one call into a fresh store; with/without alternate ``--repeats`` times.
2. A reference query (``reference_samples``, k=8) from the store: ms per neuron, over every
   channel of the last conv layer and the three rankings.
3. Purity: for each class, its top neuron in the last conv layer (highest mean contrastive
   relevance in ``neuron_stats``); the share of its top-8 references (over all samples, no
   ``target=``) whose scene holds the class, by contrast, relevance and activation. Untuned.
4. Against zennit-crp's FeatureVisualization (``--crp-python``, its own virtualenv): the same
   samples, one process, relevance sum per channel (``bench/atlas_crp.py``), one run after each
   with/without pair (interleaved); the time ratio of the medians and the overlap of the RelMax
   top-8 sets with ``by="relevance"`` per channel of the last conv.

The 1-minute load average is recorded before every timed run (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LAYER = "features.11"
K = 8

CHILD = """
import sys, time, shutil
import clrp_widgets as cw
from distributed import Client
from clrp_widgets.scale import explain_dataset, local_cluster
bundle, scenes = cw.load_model("shapes"), cw.scenes({scenes}, seed=7)
with local_cluster(1) as cluster, Client(cluster) as client:
    explain_dataset(bundle, cw.scenes(8, seed=1), {warm!r}, client=client, chunk={chunk},
                    progress=False)
    began = time.perf_counter()
    explain_dataset(bundle, scenes, {store!r}, client=client, chunk={chunk}, progress=False)
    print("SECONDS", time.perf_counter() - began)
"""


def timed_run(tree: Path, scenes: int, chunk: int, folder: Path, keep: Path | None) -> float:
    """Seconds of one explain_dataset call in a child process using the package at ``tree``."""
    stamp = time.time_ns()
    store = keep if keep is not None else folder / f"run-{stamp}.zarr"
    script = CHILD.format(
        scenes=scenes, chunk=chunk, warm=str(folder / f"warm-{stamp}.zarr"), store=str(store)
    )
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    return float(next(line for line in out.stdout.splitlines() if line.startswith("SECONDS"))[8:])


def query_times(store: Path) -> dict[str, float]:
    from clrp_widgets.scale import reference_samples

    reference_samples(store, LAYER, 0)  # warm: imports, first open
    times: dict[str, list[float]] = {}
    for by in ("contrast", "relevance", "activation"):
        for channel in range(64):
            began = time.perf_counter()
            reference_samples(store, LAYER, channel, by=by, k=K)
            times.setdefault(by, []).append(time.perf_counter() - began)
    return {by: 1000 * statistics.median(t) for by, t in times.items()} | {
        "max_ms": 1000 * max(max(t) for t in times.values())
    }


def purity(store: Path, scenes: object) -> dict:
    from clrp_widgets.scale import neuron_stats, reference_samples

    stats = neuron_stats(store).sel(contrast="clrp1", layer=LAYER).compute()
    width = int(stats.n_channels)
    labels = np.asarray(scenes.labels.values) > 0  # type: ignore[attr-defined]
    rows = {}
    for cls in stats["class"].values:
        mean = stats["mean"].sel({"class": cls}).values[:width]
        channel = int(np.nanargmax(mean))
        row = {"channel": channel}
        for by in ("contrast", "relevance", "activation"):
            refs = reference_samples(store, LAYER, channel, by=by, k=K)
            row[by] = float(labels[refs["image"].values, int(cls)].mean())
        rows[str(stats["class_name"].sel({"class": cls}).item())] = row
    return rows


def crp_inputs(scenes: object, folder: Path) -> Path:
    """The model's weights and the store's samples, saved for bench/atlas_crp.py."""
    import torch

    import clrp_widgets as cw
    from clrp_widgets.scale.data import sample_table

    table = sample_table(scenes)
    samples = folder / "samples.pt"
    torch.save(
        {
            "state_dict": cw.load_model("shapes").model.state_dict(),
            "images": table.images,
            "image": torch.from_numpy(table.image),
            "target": torch.from_numpy(table.target),
        },
        samples,
    )
    return samples


def run_crp(crp_python: Path, samples: Path) -> dict:
    """One run of bench/atlas_crp.py in the CRP virtualenv: its seconds and RelMax top-8s."""
    out = samples.with_name(f"crp-{time.time_ns()}.json")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    script = str(ROOT / "bench" / "atlas_crp.py")
    subprocess.run([str(crp_python), script, str(samples), str(out)], env=env, check=True)
    return json.loads(out.read_text())


def crp_compare(store: Path, runs: list[dict], ours: list[float]) -> dict:
    """Time ratio (medians of the interleaved runs) and overlap of the top-8 sets per channel."""
    from clrp_widgets.scale import reference_samples

    overlaps = []
    for channel, theirs in enumerate(runs[0]["top"]):
        mine = reference_samples(store, LAYER, channel, by="relevance", k=K)["sample"].values
        overlaps.append(len(set(mine.tolist()) & set(theirs)) / K)
    crp_s, ours_s = (statistics.median(t) for t in ([r["seconds"] for r in runs], ours))
    return {
        "crp_seconds": [r["seconds"] for r in runs],
        "time_ratio_crp_over_ours": crp_s / ours_s,
        "same_top_every_run": all(r["top"] == runs[0]["top"] for r in runs),
        "overlap_mean": float(np.mean(overlaps)),
        "overlap_min": float(np.min(overlaps)),
        "channels_identical": int(sum(o == 1.0 for o in overlaps)),
        "composite": runs[0]["composite"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=2000)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--without", type=Path)
    parser.add_argument("--crp-python", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import clrp_widgets as cw
    from clrp_widgets.scale.data import sample_table

    scenes = cw.scenes(args.scenes, seed=7)
    result: dict = {"scenes": args.scenes, "samples": len(sample_table(scenes))}
    result["load_before"] = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder, store = Path(tmp), Path(tmp) / "atlas.zarr"
        samples = None if args.crp_python is None else crp_inputs(scenes, folder)
        seconds: dict[str, list[float]] = {"with": [], "without": [], "crp": []}
        loads: dict[str, list[float]] = {"with": [], "without": [], "crp": []}
        crp_runs: list[dict] = []
        for repeat in range(args.repeats):  # interleaved: with, without, CRP, with, ...
            keep = store if repeat == 0 else None
            loads["with"].append(os.getloadavg()[0])
            seconds["with"].append(timed_run(ROOT, args.scenes, args.chunk, folder, keep))
            if args.without is not None:
                loads["without"].append(os.getloadavg()[0])
                seconds["without"].append(
                    timed_run(args.without, args.scenes, args.chunk, folder, None)
                )
            if samples is not None:
                loads["crp"].append(os.getloadavg()[0])
                crp_runs.append(run_crp(args.crp_python, samples))
                seconds["crp"].append(crp_runs[-1]["seconds"])
            print(json.dumps({"seconds": seconds, "load_1min_before": loads}), flush=True)
        result["explain_seconds"] = seconds
        result["load_1min_before_each"] = loads
        if seconds["without"]:
            with_, without = (statistics.median(seconds[k]) for k in ("with", "without"))
            result["summary_overhead"] = with_ / without - 1
        result["load_before_queries"] = os.getloadavg()[0]
        result["query_ms"] = query_times(store)
        result["purity"] = purity(store, scenes)
        if crp_runs:
            result["crp"] = crp_compare(store, crp_runs, seconds["with"])
    result["load_after"] = os.getloadavg()[0]
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
