"""bqplot charts of the Explorer: the top-5 predictions and the per-channel neuron bars.

Both are clickable: a click on a bar calls the registered callback with the class (top-k) or the
channel and the layer it belongs to (neuron bars). bqplot draws labels with SVG text, so class
names are never parsed as HTML. Click handlers ignore malformed messages.

The top-k axis scales itself to the largest shown probability, and every row has a faint
full-length track behind its bar that is clickable too, so a class of 0.01 % is as easy to pick
as one of 90 %.
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
SERIES_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
LEGEND = {"contrast": "contrast = target − dual"}  # the legend says what contrast means


def unique_labels(names: Sequence[str]) -> list[str]:
    """Bar labels for an ordinal axis: repeated names get their position appended."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def clicked_index(event: Any, n: int) -> int | None:
    """The bar index of a bqplot click message, or None when it is malformed or out of range."""
    data = event.get("data") if isinstance(event, dict) else None
    index = data.get("index") if isinstance(data, dict) else None
    if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < n:
        return index
    return None


def _on_bar_click(bars: bq.Bars, callback: Callable[[int], None]) -> None:
    def handler(_: Any, event: Any) -> None:
        index = clicked_index(event, len(bars.x))
        if index is not None:
            callback(index)

    bars.on_element_click(handler)


def percent(p: float) -> str:
    """A probability as a percentage with enough digits to tell small ones apart."""
    if p >= 0.01 or p == 0:
        return f"{p:.0%}"
    return f"{p:.2%}" if p >= 1e-4 else f"{p * 100:.1e}%"


class TopClassesChart:
    """Horizontal bars of the top-k class probabilities; the current target is highlighted."""

    def __init__(self, k: int = 5) -> None:
        self.k = k
        self.classes: list[int] = []
        scales = {"x": bq.OrdinalScale(reverse=True), "y": bq.LinearScale(min=0.0, max=1.0)}
        self.track = bq.Bars(  # full-length, faint, clickable rows behind the bars
            x=[],
            y=[],
            scales=scales,
            orientation="horizontal",
            colors=["#9ecae1"],
            opacities=[0.18],
            padding=0.2,
        )
        self.bars = bq.Bars(
            x=[],
            y=[],
            scales=scales,
            orientation="horizontal",
            color_mode="group",  # one colour per bar (bqplot: "element" is per row)
            colors=["#9ecae1"],
            padding=0.2,
        )
        self.axis = bq.Axis(scale=scales["y"], label="probability", tick_format=".0%", num_ticks=4)
        self.figure = bq.Figure(
            marks=[self.track, self.bars],
            axes=[bq.Axis(scale=scales["x"], side="left"), self.axis],
            title="top-5 (click a row: target)",
            fig_margin={"top": 40, "bottom": 40, "left": 170, "right": 20},
            layout={"width": "440px", "height": "220px"},
        )

    def show(
        self,
        probs: np.ndarray,
        class_names: Sequence[str],
        target: int,
        k: int | None = None,
        independent: bool = False,
    ) -> None:
        """Show the k most probable classes, highlighting ``target``.

        The axis ends just past the largest shown probability. ``independent`` (sigmoid
        outputs) says so on the axis: such probabilities need not sum to 100 %.
        """
        self.k = int(k or self.k)
        probs = np.asarray(probs, dtype=float)
        order = np.argsort(-probs, kind="stable")[: self.k]
        self.classes = [int(c) for c in order]
        names = [f"{class_names[c]} {percent(probs[c])}" for c in self.classes]
        top = float(probs[order[0]]) if len(order) else 1.0
        high = min(1.0, top * 1.1) if top > 0 else 1.0
        with self.bars.hold_sync(), self.track.hold_sync():
            self.bars.scales["y"].max = high
            self.axis.tick_format = ".0%" if high >= 0.05 else (".2%" if high >= 5e-4 else ".1e")
            self.bars.x = unique_labels(names)
            self.bars.y = probs[order]
            self.track.x = self.bars.x
            self.track.y = np.full(len(order), high)
            self.highlight(target)
        self.figure.title = f"top-{self.k} (click a row: target)"
        self.axis.label = "probability (sigmoid: independent)" if independent else "probability"

    def highlight(self, target: int) -> None:
        """Colour the target's bar (if it is among the top-k)."""
        self.bars.colors = ["#e6550d" if c == target else "#9ecae1" for c in self.classes] or [
            "#9ecae1"
        ]

    def on_click(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(class index)`` when a bar or its row's track is clicked."""
        for mark in (self.bars, self.track):
            _on_bar_click(mark, lambda i: callback(self.classes[i]))


class NeuronBarsChart:
    """Grouped bars (target, dual, contrast[, data-set mean]) for a layer's top ±n channels.

    ``layer`` is the layer the bars belong to: a click reports it with the channel, so a click
    that arrives after a layer change is recognised as stale.
    """

    def __init__(self) -> None:
        self.channels: list[int] = []
        self.layer: str | None = None
        self.bars = bq.Bars(
            x=[],
            y=[],
            scales={"x": bq.OrdinalScale(), "y": bq.LinearScale()},
            type="grouped",
            padding=0.15,
            display_legend=False,  # on in show(): an empty legend breaks bqplot's draw_legend
            selected_style={"stroke": "black", "stroke-width": 2},
            tooltip=bq.Tooltip(fields=["x", "y"], labels=["", "relevance"], formats=["", ".3g"]),
        )
        self.figure = bq.Figure(
            marks=[self.bars],
            axes=[
                bq.Axis(scale=self.bars.scales["x"], label="channel", label_offset="36px"),
                bq.Axis(scale=self.bars.scales["y"], side="left", tick_format=".2g"),
            ],
            title="neuron relevance (click a bar: conditional map; a second bar: compare)",
            legend_location="top",
            fig_margin={"top": 40, "bottom": 60, "left": 60, "right": 10},
            layout={"width": "100%", "height": "260px"},
        )

    def show(
        self,
        channels: Sequence[int],
        series: dict[str, np.ndarray],
        title: str,
        layer: str | None = None,
        labels: Sequence[str] | None = None,
        unit: str = "channel",
    ) -> None:
        """Bars for ``channels`` of ``layer``; ``series`` maps a kind name to aligned values.

        ``labels`` name the bars (default ``c<channel>``); ``unit`` labels the axis.
        """
        self.channels = [int(c) for c in channels]
        self.layer = layer
        kinds = list(series)
        self.figure.axes[0].label = unit
        with self.bars.hold_sync():
            self.bars.selected = None
            self.bars.x = unique_labels(labels or [f"c{c}" for c in self.channels])
            y = np.stack([np.asarray(series[k], dtype=float) for k in kinds])
            # bqplot 0.13's grouped bars never compute their y domain: set it here.
            low, high = (
                min(0.0, float(np.nanmin(y, initial=0))),
                max(0.0, float(np.nanmax(y, initial=0))),
            )
            pad = 0.05 * (high - low) or 1.0
            self.bars.scales["y"].min, self.bars.scales["y"].max = low - pad, high + pad
            self.bars.y = y
            self.bars.labels = [LEGEND.get(k, k) for k in kinds]
            self.bars.display_legend = True
            self.bars.colors = [
                KIND_COLORS.get(k, SERIES_COLORS[i % len(SERIES_COLORS)])
                for i, k in enumerate(kinds)
            ]
        longest = max((len(x) for x in self.bars.x), default=0)
        crowded = longest > 5 or len(self.bars.x) > 16  # labels would touch at ~900 px
        self.figure.axes[0].tick_rotate = -45 if crowded else 0
        self.figure.fig_margin = {**self.figure.fig_margin, "bottom": 40 + 6 * min(longest, 24)}
        self.figure.title = title

    def select(self, channels: Sequence[int]) -> None:
        """Outline the bars of the selected channels."""
        idx = [self.channels.index(c) for c in channels if c in self.channels]
        self.bars.selected = idx or None

    def on_click(self, callback: Callable[..., None]) -> None:
        """Call ``callback(channel, layer)`` when a bar (group) is clicked."""
        _on_bar_click(self.bars, lambda i: callback(self.channels[i], self.layer))
