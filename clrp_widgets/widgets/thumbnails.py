"""``ThumbnailGrid``: small maps of the top channels, clickable (anywidget; ``js/thumbnails.js``).

The maps travel as one float32 buffer (n, y, x). A click sends ``{"event": "thumb", "channel"}``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anywidget
import numpy as np
import traitlets as t

from clrp_widgets.widgets._static import STYLE, bundle


class ThumbnailGrid(anywidget.AnyWidget):
    """A grid of per-channel maps sharing one colour scale, so their strengths compare."""

    _esm = bundle("thumbnails")
    _css = STYLE

    image = t.Bytes(b"").tag(sync=True)
    height = t.Int(0).tag(sync=True)
    width = t.Int(0).tag(sync=True)
    maps = t.Bytes(b"").tag(sync=True)
    channels = t.List(t.Int()).tag(sync=True)
    labels = t.List(t.Unicode()).tag(sync=True)
    selected = t.List(t.Int()).tag(sync=True)
    mode = t.Enum(["signed", "positive"], "positive").tag(sync=True)
    thumb_size = t.Int(72).tag(sync=True)
    title = t.Unicode("").tag(sync=True)
    busy = t.Bool(False).tag(sync=True)
    state = t.Dict().tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._callbacks: list[Callable[[int], None]] = []
        self.on_msg(self._dispatch)

    def set_maps(
        self,
        image: np.ndarray,
        maps: np.ndarray,
        channels: Sequence[int],
        labels: Sequence[str],
    ) -> None:
        """Show (n, h, w) maps over an (h, w, 3) uint8 image, one per channel."""
        maps = np.ascontiguousarray(maps, dtype=np.float32)
        with self.hold_sync():
            self.height, self.width = int(maps.shape[1]), int(maps.shape[2])
            self.image = np.ascontiguousarray(image, dtype=np.uint8).tobytes()
            self.channels = [int(c) for c in channels]
            self.labels = [str(s) for s in labels]
            self.maps = maps.tobytes()

    def on_click(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(channel)`` when a thumbnail is clicked."""
        self._callbacks.append(callback)

    def _dispatch(self, _: Any, content: dict, buffers: list) -> None:
        if isinstance(content, dict) and content.get("event") == "thumb":
            channel = content.get("channel")
            if (
                isinstance(channel, int)
                and not isinstance(channel, bool)
                and channel in self.channels
            ):
                for cb in self._callbacks:
                    cb(channel)
