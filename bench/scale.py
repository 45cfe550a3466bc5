"""Images per second of ``cw.scale.explain_dataset`` with 1 and 2 workers, beside a plain loop.

    python bench/scale.py [--scenes 96] [--chunk 16] [--repeats 5] [--json out.json]

On the shipped "shapes" model, explaining generated scenes (one sample per class present, CLRP1,
target/dual/contrast, every layer captured), it times side by side, interleaved ``--repeats``
times (median and best, since the machine is shared):

- ``loop``: the plain in-process loop over the same chunks (``RelevanceEngine.run`` and the same
  sums), one torch thread, nothing written;
- ``1 worker`` / ``2 workers``: explain_dataset on a warm LocalCluster (one thread per worker;
  the model already loaded by a warm-up run), writing a fresh zarr store each time (so the
  store's creation, about 0.7 s here, is included);
- ``cold, 2 workers``: explain_dataset with no client, i.e. including the start and close of its own
  LocalCluster (what a user meets on a first call).

Overhead = time of the 1-worker run / time of the loop - 1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

import clrp_widgets as cw
from clrp_widgets.engine import RelevanceEngine
from clrp_widgets.scale import explain_dataset, local_cluster
from clrp_widgets.scale.data import sample_table

KINDS = ("target", "dual", "contrast")


def plain_loop(bundle: cw.ModelBundle, scenes: object, chunk: int) -> float:
    """Seconds for the in-process loop over the same chunks, one thread, nothing written."""
    table = sample_table(scenes)
    engine = RelevanceEngine(bundle.model, input_bounds=bundle.input_bounds)
    began = time.perf_counter()
    for start in range(0, len(table), chunk):
        x, target = (torch.from_numpy(a) for a in table.batch(start, start + chunk))
        out = engine.run(x, target, contrast="clrp1", kinds=KINDS, capture="all")
        out.input.sum(dim=2).numpy()
        for capture in out.layers.values():
            rel = capture.relevance
            (rel.flatten(3).sum(dim=3) if rel.ndim > 3 else rel).numpy()
    return time.perf_counter() - began


def scaled(bundle, scenes, chunk: int, client, folder: Path, n_workers: int | None = None) -> float:
    """Seconds for one explain_dataset call into a fresh store."""
    store = folder / f"run-{time.time_ns()}.zarr"
    began = time.perf_counter()
    report = explain_dataset(
        bundle, scenes, store, client=client, chunk=chunk, progress=False, n_workers=n_workers
    )
    seconds = time.perf_counter() - began
    assert report.computed == report.n_chunks, report
    shutil.rmtree(store)
    return seconds


def warm_client(n_workers: int):
    from distributed import Client

    cluster = local_cluster(n_workers)
    return cluster, Client(cluster)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=96)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    torch.set_num_threads(1)
    bundle = cw.load_model("shapes")
    scenes = cw.scenes(args.scenes, seed=7)
    samples = len(sample_table(scenes))
    seconds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clusters = {n: warm_client(n) for n in (1, 2)}
        try:
            for _, client in clusters.values():  # warm-up: imports, model load, engine build
                explain_dataset(
                    bundle,
                    scenes[:4],
                    folder / f"warm-{id(client)}.zarr",
                    client=client,
                    chunk=args.chunk,
                    progress=False,
                )
            for _ in range(args.repeats):  # interleaved, so load changes hit every case alike
                seconds.setdefault("loop", []).append(plain_loop(bundle, scenes, args.chunk))
                for n, (_, client) in clusters.items():
                    label = f"{n} worker" + ("s" if n > 1 else "")
                    seconds.setdefault(label, []).append(
                        scaled(bundle, scenes, args.chunk, client, folder)
                    )
        finally:
            for cluster, client in clusters.values():
                client.close()
                cluster.close()
        seconds["cold, 2 workers"] = [scaled(bundle, scenes, args.chunk, None, folder, 2)]

    median = {case: statistics.median(values) for case, values in seconds.items()}
    best = {case: min(values) for case, values in seconds.items()}
    print(
        f"shapes model, {args.scenes} scenes = {samples} samples, chunk {args.chunk}, "
        f"{args.repeats} interleaved repeats (cold: 1 run)"
    )
    print(f"{'case':<18}{'median s':>9}{'images/s':>10}{'vs loop':>9}{'best s':>8}{'vs loop':>9}")
    for case in median:
        m, b = median[case], best[case]
        print(
            f"{case:<18}{m:>9.2f}{samples / m:>10.1f}{median['loop'] / m:>9.2f}"
            f"{b:>8.2f}{best['loop'] / b:>9.2f}"
        )
    for label, table in (("median", median), ("best", best)):
        one, two, loop = table["1 worker"], table["2 workers"], table["loop"]
        print(
            f"{label}: 2 workers / 1 worker speed-up {one / two:.2f}x, "
            f"overhead of 1 worker vs the loop {one / loop - 1:+.0%}"
        )
    if args.json:
        args.json.write_text(json.dumps({"samples": samples, "seconds": seconds}, indent=1))


if __name__ == "__main__":
    main()
