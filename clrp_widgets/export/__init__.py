"""Shareable notebooks: one self-contained HTML file whose widgets render with no network.

``python -m clrp_widgets.export NB.ipynb -o OUT.html`` executes and exports a notebook;
``jupyter nbconvert --to clrp_html`` uses the same exporter, :class:`ClrpHTMLExporter`.
The names below are imported lazily, so that the command line refuses a bad path at once,
before nbconvert and torch are loaded.
"""

from __future__ import annotations

from clrp_widgets._lazy import lazy_names

_EXPORTS = {
    "ClrpHTMLExporter": "clrp_widgets.export.exporter",
    "NotebookExecutionError": "clrp_widgets.export.run",
    "export_notebook": "clrp_widgets.export.run",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_names(__name__, _EXPORTS, __all__)
