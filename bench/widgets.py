"""Explorer latency by simulated front-end messages: click -> new map, with the forward cached.

Run: ``python bench/widgets.py [--models shapes vgg16] [--clicks 7]``; add ``--browser`` to time
the same kinds of click in JupyterLab + chromium instead (``bench/widgets_browser.py``).
For each model, one Explorer on one image; then a neuron-bar click on a channel whose map was never
computed (the honest case: one backward pass through the engine, forward cached), a click on a
second bar whose map the thumbnails already hold (the compare view, from the cache), a pixel click
(neuron list), and a top-5 click (new target: a new decision map, bars and 12 thumbnail maps).
Times are wall-clock from the message to the widgets showing the result (``map_version`` or the
worker going idle), medians over ``--clicks`` clicks, next to a plain forward pass and a plain
gradient of the same model in the same run. VGG16 uses random weights (no download); its speed does
not depend on them.
Targets (issue 4): click -> map <= 150 ms on the shipped model, <= 1.5 s on VGG16 on CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import clrp_widgets as cw
from clrp_widgets.widgets.explorer import THUMBNAILS, Explorer

TARGET_MS = {"shapes": 150.0, "vgg16": 1500.0}


def _message(widget, content: dict) -> None:
    """What the browser sends for a custom event (bqplot click, canvas click)."""
    widget._handle_msg(
        {"content": {"data": {"method": "custom", "content": content}}, "buffers": []}
    )


def _bar_click(bars, index: int) -> None:
    _message(bars, {"event": "element_click", "data": {"index": index}})


def _timed(action, done) -> float:
    t0 = time.perf_counter()
    action()
    done()
    return (time.perf_counter() - t0) * 1e3


def _until_version(ex: Explorer, version: int) -> None:
    while ex.map_version <= version and ex.error == "":
        time.sleep(0.0005)
    if ex.error:
        raise RuntimeError(ex.error)


def _model(name: str):
    if name == "shapes":
        bundle = cw.load_model("shapes")
        image = cw.scenes(1, seed=7, min_objects=2, max_objects=2).tensor()[0]
        return cw.Explainer(bundle), image, "features"
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.vgg16(weights=None).eval()
    mean = torch.tensor([0.485, 0.456, 0.406])
    std = torch.tensor([0.229, 0.224, 0.225])
    bounds = ((-mean / std).tolist(), ((1 - mean) / std).tolist())
    image = (torch.rand(3, 224, 224) - mean[:, None, None]) / std[:, None, None]
    return cw.Explainer(model, input_bounds=bounds), image, "features"


def _reference(ex, image, repeats: int) -> dict[str, float]:
    x = image.unsqueeze(0)
    fwd, grad = [], []
    for _ in range(repeats):
        with torch.no_grad():
            fwd.append(_timed(lambda: ex.model(x), lambda: None))
        xg = x.clone().requires_grad_(True)

        def backward(xg=xg):
            ex.model(xg)[0, 0].backward()

        grad.append(_timed(backward, lambda: None))
    return {"forward_ms": statistics.median(fwd), "gradient_ms": statistics.median(grad)}


def _click_to_map(ex: Explorer, send) -> float:
    """ms from a front-end message to the next map version on screen."""
    version = ex.map_version
    return _timed(send, lambda: _until_version(ex, version))


def bench(name: str, clicks: int) -> dict[str, float]:
    """Median latencies (ms) of the Explorer's click paths on one model."""
    explainer, image, _ = _model(name)
    t0 = time.perf_counter()
    ex = Explorer(explainer, image)
    ex.wait()  # the Explorer displays at once and fills in: the first view is complete here
    first = (time.perf_counter() - t0) * 1e3
    bars, channels = ex.bars.bars, ex.bars.channels
    neuron, cached, pixel, target = [], [], [], []
    for i in range(clicks):
        ex.select(channels=[])
        rank = min(THUMBNAILS + i, len(channels) - 1)  # a bar without a thumbnail: not cached
        neuron.append(_click_to_map(ex, lambda rank=rank: _bar_click(bars, rank)))
        cached.append(_click_to_map(ex, lambda i=i: _bar_click(bars, i % 2)))
        y, x = (5 + 3 * i) % ex.heatmap.height, (11 + 7 * i) % ex.heatmap.width
        event = {"event": "pixel", "y": y, "x": x}
        pixel.append(_timed(lambda event=event: _message(ex.heatmap, event), ex.wait))
        rank = 1 + i % (len(ex.top5.classes) - 1)
        target.append(_click_to_map(ex, lambda rank=rank: _bar_click(ex.top5.bars, rank)))
        ex.wait()
    result = {
        "first_view_ms": first,
        "click_to_map_ms": statistics.median(neuron),
        "click_to_map_max_ms": max(neuron),
        "click_cached_ms": statistics.median(cached),
        "pixel_to_list_ms": statistics.median(pixel),
        "target_to_map_ms": statistics.median(target),
        **_reference(explainer, image, max(3, clicks // 2)),
    }
    result["click_over_gradient"] = result["click_to_map_ms"] / result["gradient_ms"]
    result["target_ms"] = TARGET_MS.get(name, float("nan"))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["shapes", "vgg16"])
    parser.add_argument("--clicks", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--browser",
        action="store_true",
        help="time clicks in JupyterLab + chromium (click -> canvas changed)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.browser:
        from widgets_browser import bench_browser

        results = bench_browser(args.models, args.clicks)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return 0
    results = {}
    for name in args.models:
        results[name] = r = bench(name, args.clicks)
        verdict = "ok" if r["click_to_map_ms"] <= r["target_ms"] else "OVER TARGET"
        verdict = f"target <= {r['target_ms']:.0f}: {verdict}"
        print(
            f"{name:7s} click->map {r['click_to_map_ms']:8.1f} ms"
            f" (max {r['click_to_map_max_ms']:.1f}; {verdict})"
            f" | cached bar {r['click_cached_ms']:6.1f} ms"
            f" | pixel->list {r['pixel_to_list_ms']:7.1f} ms"
            f" | new target {r['target_to_map_ms']:8.1f} ms"
            f" | first view {r['first_view_ms']:8.1f} ms"
            f" | forward {r['forward_ms']:7.1f} ms, gradient {r['gradient_ms']:7.1f} ms,"
            f" click/gradient {r['click_over_gradient']:.2f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
