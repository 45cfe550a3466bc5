"""Shareable notebooks: one self-contained HTML file whose widgets render with no network.

``python -m clrp_widgets.export NB.ipynb -o OUT.html`` executes and exports a notebook;
``jupyter nbconvert --to clrp_html`` uses the same exporter, :class:`ClrpHTMLExporter`.
The names below are imported lazily, so that the command line refuses a bad path at once,
before nbconvert and torch are loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ClrpHTMLExporter": "clrp_widgets.export.exporter",
    "NotebookExecutionError": "clrp_widgets.export.run",
    "export_notebook": "clrp_widgets.export.run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'clrp_widgets.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
