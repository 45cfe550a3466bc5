"""Helpers that play the front end: widget messages exactly as the browser sends them."""

from __future__ import annotations

from typing import Any


def custom(widget: Any, content: dict) -> None:
    """A custom message from the front end (anywidget ``model.send`` / bqplot clicks)."""
    widget._handle_msg(
        {"content": {"data": {"method": "custom", "content": content}}, "buffers": []}
    )


def update(widget: Any, **state: Any) -> None:
    """A state update from the front end (a picker or slider changed by the user)."""
    widget._handle_msg(
        {
            "content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
            "buffers": [],
        }
    )


def bar_click(bars: Any, index: int) -> None:
    """A click on bar ``index`` of a bqplot ``Bars`` mark."""
    custom(bars, {"event": "element_click", "data": {"index": index}})
