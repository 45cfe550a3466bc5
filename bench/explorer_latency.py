"""Explorer latency on a big model: first paint and each action to its main map (kernel side).

VGG16 with random weights (no download) on CPU, driven by the same messages a browser sends.
"First paint" is the constructor's return: the widget can display (image + placeholder) then.
Each action is timed from the front-end message to the moment the widgets show its result.
Usage: python bench/explorer_latency.py [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "widgets"))
from widget_messages import bar_click, custom, update

import clrp_widgets as cw
from clrp_widgets.widgets.explorer import Explorer


def until(widget, trait: str, ready, timeout: float = 600.0) -> float:
    """Seconds until ``ready(widget)`` holds (checked on every change of ``trait``)."""
    done = threading.Event()

    def check(_=None) -> None:
        if ready(widget):
            done.set()

    widget.observe(check, trait)
    check()
    start = time.perf_counter()
    done.wait(timeout)
    widget.unobserve(check, trait)
    return time.perf_counter() - start


def timed(action, widget, trait: str, ready, *later) -> float | list[float]:
    """Seconds from ``action()`` until ``ready(widget)``, and until each of ``later`` holds."""
    start = time.perf_counter()
    checks = [ready, *later]
    done = [threading.Event() for _ in checks]
    at = [0.0] * len(checks)

    def check(_=None) -> None:
        for i, ok in enumerate(checks):
            if not done[i].is_set() and ok(widget):
                at[i] = time.perf_counter() - start
                done[i].set()

    widget.observe(check, trait)
    action()
    for event in done:
        event.wait(600)
    widget.unobserve(check, trait)
    return at if later else at[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.vgg16(weights=None)
    names = [f"class {i}" for i in range(1000)]
    bundle = cw.ModelBundle(model, names, (-2.2, 2.7), name="vgg16-random")
    x = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(0)) * 4.9 - 2.2
    rows: list[tuple[str, float]] = []

    start = time.perf_counter()
    ex = Explorer(bundle, x)
    rows.append(
        ("first paint (constructor returns, placeholder shown)", time.perf_counter() - start)
    )
    rows.append(
        ("first main map", until(ex.heatmap, "state", lambda h: h.state.get("map_version", 0) >= 1))
    )
    ex.wait(600)
    main = lambda target: lambda h: h.state.get("target") == target  # noqa: E731

    other = ex.top5.classes[1]
    version = ex.map_version
    to_map, to_bars = timed(
        lambda: bar_click(ex.top5.track, 1),
        ex.heatmap,
        "state",
        main(other),
        lambda h: h.state.get("map_version", 0) > version,
    )
    rows.append(("new target (top-k row click)", to_map))
    rows.append(("new target: the neuron bars too (whole view)", to_bars))
    # thumbnails of the new target are computing now: a click interrupts them
    third = ex.top5.classes[2]
    time.sleep(0.5)
    rows.append(
        (
            "new target during thumbnails",
            timed(lambda: bar_click(ex.top5.track, 2), ex.heatmap, "state", main(third)),
        )
    )
    ex.wait(600)
    index = [v for _, v in ex.controls.contrast_picker.options].index("clrp2")
    rows.append(
        (
            "contrast CLRP1 -> CLRP2",
            timed(
                lambda: update(ex.controls.contrast_picker, index=index),
                ex.heatmap,
                "state",
                lambda h: h.state.get("contrast") == "clrp2",
            ),
        )
    )
    ex.wait(600)
    channel = ex.bars.channels[0]
    rows.append(
        (
            "neuron bar click -> its map",
            timed(
                lambda: bar_click(ex.bars.bars, 0),
                ex.neuron_view,
                "state",
                lambda v: v.state.get("channels") == [channel],
            ),
        )
    )
    ex.wait(600)
    rows.append(
        (
            "pixel click -> neuron list",
            timed(
                lambda: custom(ex.heatmap, {"event": "pixel", "y": 100, "x": 120}),
                ex.heatmap,
                "state",
                lambda h: h.state.get("pixel") == [100, 120],
            ),
        )
    )
    ex.wait(600)
    layer = "features.21"
    rows.append(
        (
            "layer change -> bars",
            timed(
                lambda: update(ex.controls.layer_picker, index=ex.layer_names.index(layer)),
                ex.heatmap,
                "state",
                lambda h: h.state.get("layer") == layer,
            ),
        )
    )
    time.sleep(0.3)
    start = time.perf_counter()
    ex.cancel()
    ex._runner.wait(600)
    rows.append(("cancel -> idle", time.perf_counter() - start))
    index = [v for _, v in ex.controls.contrast_picker.options].index("gradient")
    rows.append(
        (
            "contrast -> gradient (baseline)",
            timed(
                lambda: update(ex.controls.contrast_picker, index=index),
                ex.heatmap,
                "state",
                lambda h: h.state.get("contrast") == "gradient",
            ),
        )
    )
    ex.wait(600)

    ref = ex.session.explainer("paper")  # the engine alone, same machine, same moment
    start = time.perf_counter()
    ref.explain(ex.session.xs[0], ex.top5.classes[4], layers=["features.28"])
    rows.append(
        ("reference: one Explainer.explain, new target (no widget)", time.perf_counter() - start)
    )

    print(f"VGG16 (random weights), CPU, torch threads={args.threads}")
    print("| action | seconds |\n|---|---|")
    for name, secs in rows:
        print(f"| {name} | {secs:.2f} |")


if __name__ == "__main__":
    main()
