"""Paths of the built front-end bundles (``npm run build`` writes ``clrp_widgets/static``)."""

from __future__ import annotations

from pathlib import Path

from clrp_widgets.engine.errors import CLRPError

STATIC = Path(__file__).resolve().parent.parent / "static"
STYLE = Path(__file__).resolve().parent / "style.css"


def bundle(name: str) -> Path:
    """The ESM bundle of one widget, with a clear error when the front end was never built."""
    path = STATIC / f"{name}.js"
    if not path.exists():
        raise CLRPError(
            f"the widget front end {path} is missing; build it with `npm install && npm run build` "
            "in the repository root (or reinstall the package with `pip install -e .`)"
        )
    return path
