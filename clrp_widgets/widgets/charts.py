"""bqplot charts of the Explorer: the top-5 predictions and the per-channel neuron bars.

Both are clickable: a click on a bar calls the registered callback with the class (top-5) or the
channel (neuron bars). bqplot draws labels with SVG text, so class names are never parsed as HTML.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import bqplot as bq
import numpy as np

KIND_COLORS = {
    "target": "#e6550d",
    "dual": "#3182bd",
    "contrast": "#31a354",
    "data-set mean": "#888888",
}


def unique_labels(names: Sequence[str]) -> list[str]:
    """Bar labels for an ordinal axis: repeated names get their position appended."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def _on_bar_click(bars: bq.Bars, callback: Callable[[int], None]) -> None:
    def handler(_: Any, event: dict) -> None:
        index = event.get("data", {}).get("index")
        if isinstance(index, int) and 0 <= index < len(bars.x):
            callback(index)

    bars.on_element_click(handler)


class TopClassesChart:
    """Horizontal bars of the top-k class probabilities; the current target is highlighted."""

    def __init__(self, k: int = 5) -> None:
        self.k = k
        self.classes: list[int] = []
        self.bars = bq.Bars(
            x=[],
            y=[],
            scales={"x": bq.OrdinalScale(reverse=True), "y": bq.LinearScale(min=0.0, max=1.0)},
            orientation="horizontal",
            color_mode="group",  # one colour per bar (bqplot: "element" is per row)
            colors=["#9ecae1"],
            padding=0.2,
        )
        self.figure = bq.Figure(
            marks=[self.bars],
            axes=[
                bq.Axis(scale=self.bars.scales["x"], side="left"),
                bq.Axis(scale=self.bars.scales["y"], label="probability", tick_format=".1f"),
            ],
            title="top-5 predictions (click a bar: target)",
            fig_margin={"top": 40, "bottom": 40, "left": 150, "right": 20},
            layout={"width": "420px", "height": "220px"},
        )

    def show(self, probs: np.ndarray, class_names: Sequence[str], target: int) -> None:
        """Show the k most probable classes, highlighting ``target``."""
        order = np.argsort(-probs)[: self.k]
        self.classes = [int(c) for c in order]
        names = [f"{class_names[c]} {probs[c]:.0%}" for c in self.classes]
        with self.bars.hold_sync():
            self.bars.x = unique_labels(names)
            self.bars.y = probs[order].astype(float)
            self.highlight(target)

    def highlight(self, target: int) -> None:
        """Colour the target's bar (if it is among the top-k)."""
        self.bars.colors = ["#e6550d" if c == target else "#9ecae1" for c in self.classes] or [
            "#9ecae1"
        ]

    def on_click(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(class index)`` when a bar is clicked."""
        _on_bar_click(self.bars, lambda i: callback(self.classes[i]))


class NeuronBarsChart:
    """Grouped bars (target, dual, contrast[, data-set mean]) for a layer's top ±n channels."""

    def __init__(self) -> None:
        self.channels: list[int] = []
        self.bars = bq.Bars(
            x=[],
            y=[],
            scales={"x": bq.OrdinalScale(), "y": bq.LinearScale()},
            type="grouped",
            padding=0.15,
            display_legend=True,
            selected_style={"stroke": "black", "stroke-width": 2},
        )
        self.figure = bq.Figure(
            marks=[self.bars],
            axes=[
                bq.Axis(scale=self.bars.scales["x"], label="channel", tick_rotate=-90),
                bq.Axis(scale=self.bars.scales["y"], side="left", tick_format=".2g"),
            ],
            title="neuron relevance (click a bar: conditional map; a second bar: compare)",
            legend_location="top",
            fig_margin={"top": 40, "bottom": 60, "left": 60, "right": 10},
            layout={"width": "100%", "height": "260px"},
        )

    def show(self, channels: Sequence[int], series: dict[str, np.ndarray], title: str) -> None:
        """Bars for ``channels``; ``series`` maps a kind name to values aligned with them."""
        self.channels = [int(c) for c in channels]
        kinds = list(series)
        with self.bars.hold_sync():
            self.bars.selected = None
            self.bars.x = [f"c{c}" for c in self.channels]
            y = np.stack([np.asarray(series[k], dtype=float) for k in kinds])
            # bqplot 0.13's grouped bars never compute their y domain: set it here.
            low, high = (
                min(0.0, float(np.nanmin(y, initial=0))),
                max(0.0, float(np.nanmax(y, initial=0))),
            )
            pad = 0.05 * (high - low) or 1.0
            self.bars.scales["y"].min, self.bars.scales["y"].max = low - pad, high + pad
            self.bars.y = y
            self.bars.labels = kinds
            self.bars.colors = [KIND_COLORS.get(k, "#666666") for k in kinds]
        self.figure.title = title

    def select(self, channels: Sequence[int]) -> None:
        """Outline the bars of the selected channels."""
        idx = [self.channels.index(c) for c in channels if c in self.channels]
        self.bars.selected = idx or None

    def on_click(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(channel)`` when a bar (group) is clicked."""
        _on_bar_click(self.bars, lambda i: callback(self.channels[i]))
