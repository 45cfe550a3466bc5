"""``HeatmapView``: relevance maps over the image on canvases (anywidget; ``js/heatmap.js``).

Maps travel as one float32 buffer (panels, y, x) and the image as uint8 RGB (y, x, 3), never as
JSON lists. The front end sends ``{"event": "pixel", "y", "x"}`` when a pixel is clicked and
``{"event": "neuron", "channel"}`` when an entry of the pixel's neuron list is clicked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anywidget
import numpy as np
import traitlets as t

from clrp_widgets.widgets._static import STYLE, bundle


class HeatmapView(anywidget.AnyWidget):
    """One or more maps (e.g. a decision map, or neuron A, neuron B and A − B) over one image."""

    _esm = bundle("heatmap")
    _css = STYLE

    image = t.Bytes(b"").tag(sync=True)
    height = t.Int(0).tag(sync=True)
    width = t.Int(0).tag(sync=True)
    maps = t.Bytes(b"").tag(sync=True)
    panel_titles = t.List(t.Unicode()).tag(sync=True)
    panel_modes = t.List(t.Unicode()).tag(sync=True)
    mode = t.Enum(["signed", "positive"], "positive").tag(sync=True)
    opacity = t.Float(0.8, min=0.0, max=1.0).tag(sync=True)
    show_image = t.Bool(True).tag(sync=True)
    display_size = t.Int(256).tag(sync=True)
    pixel = t.List(t.Int(), maxlen=2).tag(sync=True)
    pixel_clicks = t.Bool(False).tag(sync=True)
    pixel_neurons = t.List(t.Dict()).tag(sync=True)
    neuron_list_title = t.Unicode("").tag(sync=True)
    title = t.Unicode("").tag(sync=True)
    caption = t.Unicode("").tag(sync=True)
    show_toolbar = t.Bool(True).tag(sync=True)
    busy = t.Bool(False).tag(sync=True)
    state = t.Dict().tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pixel_callbacks: list[Callable[[int, int], None]] = []
        self._neuron_callbacks: list[Callable[[int], None]] = []
        self.on_msg(self._dispatch)

    def set_image(self, rgb: np.ndarray) -> None:
        """Show an (H, W, 3) image; floats in [0, 1] or uint8."""
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8:
            rgb = np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)
        with self.hold_sync():
            self.height, self.width = int(rgb.shape[0]), int(rgb.shape[1])
            self.image = np.ascontiguousarray(rgb).tobytes()

    def set_maps(
        self, maps: Sequence[np.ndarray], titles: Sequence[str], modes: Sequence[str] = ()
    ) -> None:
        """Show maps of the image's size; ``modes`` forces "signed"/"positive" per panel.

        An empty mode ("") follows the widget's signed/positive toggle.
        """
        stack = np.stack([np.asarray(m, dtype=np.float32) for m in maps]) if maps else None
        if stack is not None and stack.shape[1:] != (self.height, self.width):
            raise ValueError(
                f"maps of shape {stack.shape[1:]} do not match the image's "
                f"{(self.height, self.width)}; pass maps at the image's resolution"
            )
        with self.hold_sync():
            self.panel_titles = [str(s) for s in titles]
            self.panel_modes = [str(m) for m in modes] or [""] * len(self.panel_titles)
            self.maps = b"" if stack is None else np.ascontiguousarray(stack).tobytes()

    def on_pixel(self, callback: Callable[[int, int], None]) -> None:
        """Call ``callback(y, x)`` when the user clicks a map pixel."""
        self._pixel_callbacks.append(callback)

    def on_neuron(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(channel)`` when the user clicks an entry of the pixel's neuron list."""
        self._neuron_callbacks.append(callback)

    def _dispatch(self, _: Any, content: dict, buffers: list) -> None:
        event = content.get("event") if isinstance(content, dict) else None
        if event == "pixel":
            y, x = int(content["y"]), int(content["x"])
            if 0 <= y < self.height and 0 <= x < self.width:
                for cb in self._pixel_callbacks:
                    cb(y, x)
        elif event == "neuron":
            for cb in self._neuron_callbacks:
                cb(int(content["channel"]))
