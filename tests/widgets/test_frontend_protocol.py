"""HeatmapView / ThumbnailGrid kernel side of the front-end protocol (front-end helper's file):
snapshot embedding, downloads sent as bytes, and message handlers that ignore malformed content."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from widget_messages import custom

from clrp_widgets.widgets.heatmap import HeatmapView
from clrp_widgets.widgets.thumbnails import ThumbnailGrid


def _view(h: int = 6, w: int = 5) -> HeatmapView:
    view = HeatmapView()
    view.set_image(np.zeros((h, w, 3), np.uint8))
    return view


def _decode(view: HeatmapView) -> list[np.ndarray]:
    """What js/lib/snapshot.js does: inflate, then (code - 128) / 127 * scale."""
    codes = np.frombuffer(zlib.decompress(view.snapshot_maps), np.uint8).astype(np.float32)
    size = view.height * view.width
    scales = view.snapshot["scales"]
    return [(codes[i * size : (i + 1) * size] - 128) / 127 * s for i, s in enumerate(scales)]


def test_snapshot_maps_round_trip_within_half_a_step():
    view = _view()
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 6, 5)).astype(np.float32)
    maps[1] = np.abs(maps[1]) * 1e-6  # tiny positive map keeps its own scale
    maps[2] = 0.0  # all-zero map stays zero
    view.set_snapshot("conv2", [4, 9, 1], maps, labels=["a", "b", "c"], bar_channels=[9, 4])
    assert view.snapshot["channels"] == [4, 9, 1]
    assert view.snapshot["labels"] == ["a", "b", "c"]
    assert view.snapshot["bar_channels"] == [9, 4]
    assert view.snapshot["layer"] == "conv2"
    for got, want in zip(_decode(view), maps, strict=True):
        scale = np.abs(want).max()
        assert np.abs(got - want.ravel()).max() <= scale / 254 + 1e-12


def test_snapshot_rejects_maps_of_another_size_and_missing_labels():
    view = _view()
    with pytest.raises(ValueError, match="image's resolution"):
        view.set_snapshot("conv2", [0], np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="one each"):
        view.set_snapshot("conv2", [0, 1], np.zeros((2, 6, 5)), labels=["only one"])


def test_download_request_answers_with_the_bytes(monkeypatch):
    view = _view()
    sent: list[tuple[dict, list]] = []
    monkeypatch.setattr(view, "send", lambda content, buffers=None: sent.append((content, buffers)))
    custom(view, {"event": "download", "format": "netcdf"})
    assert sent == [], "no provider: the Explorer's own handler may answer"
    view.on_download("netcdf", lambda: ("clrp_x.nc", b"CDF\x01"))
    assert view.downloads == ["netcdf"]
    custom(view, {"event": "download", "format": "netcdf"})
    assert sent == [
        ({"event": "file", "name": "clrp_x.nc", "mime": "application/x-netcdf"}, [b"CDF\x01"])
    ]

    def broken() -> tuple[str, bytes]:
        raise OSError("disk full")

    view.on_download("netcdf", broken)
    custom(view, {"event": "download", "format": "netcdf"})
    assert sent[-1][0] == {"event": "file_error", "message": "OSError: disk full"}


@pytest.mark.parametrize(
    "content",
    [
        {"event": "pixel"},
        {"event": "pixel", "y": "1", "x": 2},
        {"event": "pixel", "y": True, "x": 0},
        {"event": "pixel", "y": 1.5, "x": 0},
        {"event": "pixel", "y": 99, "x": 0},
        {"event": "neuron"},
        {"event": "neuron", "channel": None},
        {"event": "neuron", "channel": "x"},
        {"event": "download"},
        {"event": "nonsense"},
    ],
)
def test_heatmap_ignores_malformed_messages(content):
    view = _view()
    calls: list = []
    view.on_pixel(lambda y, x: calls.append((y, x)))
    custom(view, content)
    assert calls == []


def test_heatmap_passes_well_formed_clicks():
    view = _view()
    calls: list = []
    view.on_pixel(lambda y, x: calls.append((y, x)))
    custom(view, {"event": "pixel", "y": 5, "x": 4})
    assert calls == [(5, 4)]


@pytest.mark.parametrize("channel", [None, "2", True, 2.0, 7])
def test_thumbnails_ignore_malformed_or_unknown_channels(channel):
    grid = ThumbnailGrid()
    grid.set_maps(np.zeros((4, 4, 3), np.uint8), np.zeros((2, 4, 4)), [2, 5], ["c2", "c5"])
    calls: list = []
    grid.on_click(calls.append)
    custom(grid, {"event": "thumb", "channel": channel})
    custom(grid, {"event": "thumb", "channel": 5, "layer": "conv2"})
    assert calls == [5]
