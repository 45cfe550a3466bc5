"""Shareable notebooks: one self-contained HTML file whose widgets render with no network.

``python -m clrp_widgets.export NB.ipynb -o OUT.html`` executes and exports a notebook;
``jupyter nbconvert --to clrp_html`` uses the same exporter, :class:`ClrpHTMLExporter`.
"""

from clrp_widgets.export.exporter import ClrpHTMLExporter
from clrp_widgets.export.run import NotebookExecutionError, export_notebook

__all__ = ["ClrpHTMLExporter", "NotebookExecutionError", "export_notebook"]
