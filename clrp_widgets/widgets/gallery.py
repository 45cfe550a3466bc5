"""``GalleryStrip``: the Explorer's image set as a strip of small pictures, one page at a time.

Each picture carries its label and, once known, the model's prediction. A click (or ◀ ▶) calls
``on_select(index)``; only the shown page is built, so a set of thousands stays light. Labels
are plain widget text, never HTML.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import ipywidgets as w
import numpy as np
from PIL import Image


def png_thumbnail(rgb: np.ndarray, size: int = 64) -> bytes:
    """An (H, W, 3) uint8 image as PNG bytes, its larger side ``size`` pixels."""
    img = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    img.thumbnail((size, size), Image.Resampling.NEAREST if max(img.size) < size else None)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


class GalleryStrip(w.VBox):
    """Pages of ``per_page`` pictures with their labels; the selected one is highlighted."""

    def __init__(self, thumbnail: Callable[[int], bytes], per_page: int = 8) -> None:
        self._thumbnail = thumbnail
        self.per_page = per_page
        self.labels: list[str] = []
        self.predictions: dict[int, str] = {}
        self.selected = 0
        self._callbacks: list[Callable[[int], None]] = []
        self.prev_button = w.Button(
            description="◀", tooltip="previous image", layout={"width": "40px"}
        )
        self.next_button = w.Button(description="▶", tooltip="next image", layout={"width": "40px"})
        self.prev_button.on_click(lambda _: self._step(-1))
        self.next_button.on_click(lambda _: self._step(1))
        self.position = w.Label("")
        self.items = w.HBox(layout={"flex_flow": "row wrap"})
        super().__init__([w.HBox([self.prev_button, self.position, self.next_button]), self.items])
        self.add_class("clrp-gallery")

    def set_images(self, labels: Sequence[str], selected: int = 0) -> None:
        """Show a set of ``len(labels)`` images (labels may be "")."""
        self.labels = [str(s) for s in labels]
        self.selected = selected
        self._draw()

    def set_prediction(self, index: int, text: str) -> None:
        """Add the model's prediction to image ``index``'s caption."""
        self.predictions[index] = text
        if self._page(index) == self._page(self.selected):
            self._draw()

    def select(self, index: int) -> None:
        """Highlight image ``index`` (turning the page if needed)."""
        self.selected = index
        self._draw()

    def on_select(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(index)`` when the user picks an image."""
        self._callbacks.append(callback)

    def _page(self, index: int) -> int:
        return index // self.per_page

    def _step(self, step: int) -> None:
        if self.labels:
            self._pick((self.selected + step) % len(self.labels))

    def _pick(self, index: int) -> None:
        for cb in self._callbacks:
            cb(index)

    def _caption(self, i: int) -> str:
        parts = [f"{i + 1}", self.labels[i] if i < len(self.labels) else ""]
        if i in self.predictions:
            parts.append(f"→ {self.predictions[i]}")
        return " ".join(p for p in parts if p)

    def _draw(self) -> None:
        n = len(self.labels)
        self.layout.display = None if n > 1 else "none"
        start = self._page(self.selected) * self.per_page
        items = []
        for i in range(start, min(n, start + self.per_page)):
            picture = w.Image(value=self._thumbnail(i), format="png", layout={"width": "64px"})
            button = w.Button(
                description=self._caption(i),
                tooltip=self._caption(i),
                button_style="info" if i == self.selected else "",
                layout={"width": "140px"},
            )
            button.on_click(lambda _, i=i: self._pick(i))
            items.append(w.VBox([picture, button], layout={"align_items": "center"}))
        self.items.children = items
        self.position.value = f"image {self.selected + 1} of {n}"
