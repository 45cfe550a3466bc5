"""``HeatmapView``: relevance maps over the image on canvases (anywidget; ``js/heatmap.js``).

Maps travel as one float32 buffer (panels, y, x) and the image as uint8 RGB (y, x, 3), never as
JSON lists. The front end sends ``{"event": "pixel", "y", "x"}`` when a pixel is clicked and
``{"event": "neuron", "channel", "layer"}`` when an entry of the pixel's neuron list is clicked
(the Explorer handles that one: it knows which layer the list is of).

Downloads: the PNG is made in the browser. Kernel-made files (netCDF) are asked for with
``{"event": "download", "format"}`` and answered with ``{"event": "file", "name", "mime"}`` and
the bytes as one buffer; the browser saves them as a Blob, so nothing is written on the server.

Snapshot (exported HTML, no kernel): :meth:`HeatmapView.set_snapshot` embeds 8-bit, compressed
channel maps that the front end shows when a neuron bar or a thumbnail is clicked.
"""

from __future__ import annotations

import zlib
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
    image_colour = t.Bool(False).tag(sync=True)
    shared_scale = t.Bool(False).tag(sync=True)
    units = t.Unicode("relevance").tag(sync=True)
    panel_tooltips = t.List(t.Unicode()).tag(sync=True)
    panel_legends = t.List(t.Unicode()).tag(sync=True)  # colour-bar wording per panel ("": default)
    help = t.Unicode("").tag(sync=True)  # "what do the colours and words mean?" (lines: "\n")
    downloads = t.List(t.Unicode()).tag(sync=True)
    snapshot = t.Dict().tag(sync=True)
    snapshot_maps = t.Bytes(b"").tag(sync=True)
    display_size = t.Int(256).tag(sync=True)
    pixel = t.List(t.Int(), maxlen=2).tag(sync=True)
    pixel_clicks = t.Bool(False).tag(sync=True)
    pixel_neurons = t.List(t.Dict()).tag(sync=True)
    neuron_list_title = t.Unicode("").tag(sync=True)
    neuron_noun = t.Unicode("channels").tag(sync=True)  # what a pixel click lists (plural)
    title = t.Unicode("").tag(sync=True)
    caption = t.Unicode("").tag(sync=True)
    show_toolbar = t.Bool(True).tag(sync=True)
    busy = t.Bool(False).tag(sync=True)
    state = t.Dict().tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pixel_callbacks: list[Callable[[int, int], None]] = []
        self._providers: dict[str, Callable[[], tuple[str, bytes]]] = {}
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

    def on_download(self, fmt: str, provider: Callable[[], tuple[str, bytes]]) -> None:
        """Offer a kernel-made file: ``provider()`` returns ``(file name, bytes)`` on request.

        The toolbar shows a button for ``fmt`` (e.g. "netcdf"); the bytes go to the browser,
        which saves them as a download.
        """
        self._providers[fmt] = provider
        self.downloads = sorted(self._providers)

    def set_snapshot(
        self,
        layer: str,
        channels: Sequence[int],
        maps: np.ndarray | Sequence[np.ndarray],
        *,
        labels: Sequence[str] | None = None,
        bar_channels: Sequence[int] = (),
        how: str = "conditional",
        grids: tuple[np.ndarray, Sequence[str]] | None = None,
    ) -> None:
        """Embed channel maps for the exported HTML (no kernel there), 8-bit and zlib-compressed.

        ``maps`` holds one map of the image's size per channel. Each is quantised on its own scale
        ``max |v|``: code 128 is 0 and 128 +- 127 is +- scale, so the error is at most
        ``scale / 254``. ``bar_channels`` are the neuron bars' channels in bar order (a click on
        bar i shows ``bar_channels[i]``); ``labels`` name the channels (default ``c<channel>``).
        ``grids``: ``(images, titles)``, one more panel per channel shown beside its map when it
        is the only one selected (a token layer's patch grid), stored after the maps.
        """
        channels = [int(c) for c in channels]
        stack = np.asarray(maps, dtype=np.float32).reshape(len(channels), -1)
        if len(channels) and np.asarray(maps).shape[1:] != (self.height, self.width):
            raise ValueError(
                f"snapshot maps of shape {np.asarray(maps).shape[1:]} do not match the image's "
                f"{(self.height, self.width)}; pass maps at the image's resolution"
            )
        names = [f"c{c}" for c in channels] if labels is None else [str(s) for s in labels]
        if len(names) != len(channels):
            raise ValueError(f"{len(names)} labels for {len(channels)} channels; pass one each")
        grid_titles: list[str] = []
        if grids is not None:
            images, grid_titles = np.asarray(grids[0], np.float32), [str(t) for t in grids[1]]
            if images.shape != (len(channels), self.height, self.width) or len(grid_titles) != len(
                channels
            ):
                raise ValueError(
                    f"snapshot grids of shape {images.shape} with {len(grid_titles)} titles do "
                    f"not match {len(channels)} maps of {(self.height, self.width)}; pass one "
                    "image of the image's size and one title per channel"
                )
            stack = np.concatenate([stack, images.reshape(len(channels), -1)])
        flat = np.nan_to_num(stack, nan=0.0, posinf=0.0, neginf=0.0)
        scales = np.abs(flat).max(axis=1) if len(channels) else np.zeros(0, np.float32)
        safe = np.where(scales > 0, scales, 1.0)[:, None]
        codes = (np.round(flat / safe * 127) + 128).clip(1, 255).astype(np.uint8)
        with self.hold_sync():
            self.snapshot = {
                "channels": channels,
                "labels": names,
                "scales": [float(s) for s in scales],
                "bar_channels": [int(c) for c in bar_channels],
                "layer": str(layer),
                "how": str(how),
                "grid_titles": grid_titles,
            }
            self.snapshot_maps = zlib.compress(codes.tobytes(), 9)

    def _send_file(self, fmt: str) -> None:
        provider = self._providers.get(fmt)
        if provider is None:  # the Explorer may answer with its own message handler
            return
        try:
            name, data = provider()
        except Exception as exc:  # reported in the widget, where the user asked
            self.send({"event": "file_error", "message": f"{type(exc).__name__}: {exc}"})
            return
        mime = "application/x-netcdf" if fmt == "netcdf" else "application/octet-stream"
        self.send({"event": "file", "name": str(name), "mime": mime}, buffers=[bytes(data)])

    def _dispatch(self, _: Any, content: dict, buffers: list) -> None:
        event = content.get("event") if isinstance(content, dict) else None
        if event == "pixel":
            y, x = _int(content.get("y")), _int(content.get("x"))
            if y is not None and x is not None and 0 <= y < self.height and 0 <= x < self.width:
                for cb in self._pixel_callbacks:
                    cb(y, x)
        elif event == "download":
            self._send_file(str(content.get("format", "")))


def _int(value: Any) -> int | None:
    """An int from a front-end message, or None for anything else (bools, strings, floats...)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
