"""``GalleryStrip``: the Explorer's image set as a strip of small pictures, one page at a time
(anywidget; ``js/gallery.js``).

Each picture carries its label and, once known, the model's prediction. A click, ◀ ▶ or the
← → keys call ``on_select(index)``; only the shown page is sent, so a set of thousands stays
light. Labels are drawn as text, never HTML.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from typing import Any

import anywidget
import numpy as np
import traitlets as t
from PIL import Image

from clrp_widgets.widgets._static import STYLE, bundle


def png_thumbnail(rgb: np.ndarray, size: int = 64) -> bytes:
    """An (H, W, 3) uint8 image as PNG bytes, its larger side ``size`` pixels."""
    img = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    small = max(img.size) < size  # enlarged: keep the pixels sharp
    img.thumbnail((size, size), Image.Resampling.NEAREST if small else Image.Resampling.BICUBIC)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


class GalleryStrip(anywidget.AnyWidget):
    """Pages of ``per_page`` pictures with their captions; the selected one is highlighted.

    Parameters
    ----------
    thumbnail
        ``thumbnail(index)`` gives image ``index`` as PNG bytes (called for the shown page only).
    per_page
        Pictures per page.
    """

    _esm = bundle("gallery")
    _css = STYLE

    pictures = t.List(t.Unicode()).tag(sync=True)
    captions = t.List(t.Unicode()).tag(sync=True)
    indices = t.List(t.Int()).tag(sync=True)
    selected = t.Int(0).tag(sync=True)
    total = t.Int(0).tag(sync=True)

    def __init__(self, thumbnail: Callable[[int], bytes], per_page: int = 8, **kw: Any) -> None:
        super().__init__(**kw)
        self._thumbnail = thumbnail
        self.per_page = per_page
        self.labels: list[str] = []
        self.predictions: dict[int, str] = {}
        self._callbacks: list[Callable[[int], None]] = []
        self.add_class("clrp-gallery")
        self.on_msg(self._dispatch)

    def set_images(self, labels: Sequence[str], selected: int = 0) -> None:
        """Show a set of ``len(labels)`` images (labels may be "")."""
        self.labels = [str(s) for s in labels]
        self._draw(selected)

    def set_prediction(self, index: int, text: str) -> None:
        """Add the model's prediction to image ``index``'s caption."""
        self.predictions[index] = text
        if index in self.indices:
            self.captions = [self.caption(i) for i in self.indices]

    def select(self, index: int) -> None:
        """Highlight image ``index`` (turning the page if needed)."""
        self._draw(index)

    def on_select(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(index)`` when the user picks an image."""
        self._callbacks.append(callback)

    def step(self, step: int) -> None:
        """Pick the image ``step`` places on (wrapping around the set), as ◀ ▶ do."""
        if self.labels:
            self._pick((self.selected + step) % len(self.labels))

    def caption(self, i: int) -> str:
        """Image ``i``'s caption: its number, label and prediction."""
        parts = [f"{i + 1}", self.labels[i] if i < len(self.labels) else ""]
        if i in self.predictions:
            parts.append(f"→ {self.predictions[i]}")
        return " ".join(p for p in parts if p)

    def _pick(self, index: int) -> None:
        for cb in self._callbacks:
            cb(index)

    def _dispatch(self, _: Any, content: Any, buffers: Any = None) -> None:
        """Front-end events; malformed content is ignored (a hostile page cannot raise here)."""
        if not isinstance(content, dict):
            return
        event, n = content.get("event"), len(self.labels)
        if event == "step" and content.get("step") in (-1, 1):
            self.step(int(content["step"]))
        elif event == "pick" and type(content.get("index")) is int and 0 <= content["index"] < n:
            self._pick(int(content["index"]))

    def _draw(self, selected: int) -> None:
        n = len(self.labels)
        start = selected // self.per_page * self.per_page if n else 0
        shown = list(range(start, min(n, start + self.per_page)))
        if shown != list(self.indices) or n != self.total:
            pictures = [
                "data:image/png;base64," + base64.b64encode(self._thumbnail(i)).decode()
                for i in shown
            ]
        else:
            pictures = list(self.pictures)
        with self.hold_sync():
            self.pictures = pictures
            self.indices = shown
            self.captions = [self.caption(i) for i in shown]
            self.total = n
            self.selected = selected
