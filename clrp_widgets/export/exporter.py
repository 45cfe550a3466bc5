"""``ClrpHTMLExporter``: nbconvert's lab HTML, made self-contained so widgets render offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from nbconvert.exporters import HTMLExporter
from nbconvert.preprocessors import ExecutePreprocessor
from nbformat import NotebookNode
from traitlets import default

from clrp_widgets.export.assets import html_manager_js, require_js, widget_module_scripts

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
# Run after the notebook's cells: Explorers compute in the background, so the saved widget state
# is consistent only once they are idle (a no-op when the notebook made none).
WAIT_FOR_EXPLORERS = (
    "import sys as _sys\n"
    "if 'clrp_widgets.widgets.explorer' in _sys.modules:\n"
    "    _sys.modules['clrp_widgets.widgets.explorer'].wait_for_explorers()"
)


class ClrpHTMLExporter(HTMLExporter):
    """One HTML file whose widgets render with no network (over ``file://`` or http).

    Registered as the nbconvert exporter ``clrp_html``::

        jupyter nbconvert --to clrp_html --execute notebooks/quickstart.ipynb

    The template extends ``lab/index.html.j2``; it inlines require.js, the AMD bundle of each
    non-base widget module in the saved widget state and the widgets' html-manager, and it
    drops MathJax (loaded from a CDN by the stock template).
    """

    export_from_notebook = "HTML, widgets offline (clrp)"

    @default("template_name")
    def _template_name_default(self) -> str:
        return "clrp_html"

    @default("extra_template_basedirs")
    def _extra_template_basedirs_default(self) -> list[str]:
        return [*super()._default_extra_template_basedirs(), str(TEMPLATES_DIR)]

    def _preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[Any, Any]:
        """Run the preprocessors (``--execute`` among them), then gather the inlined runtime.

        It is gathered here, after execution, because only then does the notebook hold the
        widget state that says which widget modules the page needs. When the notebook is
        executed, a last cell waits for its Explorers to be idle, so the saved state shows
        finished views; that cell is not exported.
        """
        executes = any(
            isinstance(p, ExecutePreprocessor) and p.enabled for p in self._preprocessors
        )
        if executes:
            nb = nbformat.from_dict(nb)  # a copy: the caller's notebook is left as it was
            nb.cells.append(nbformat.v4.new_code_cell(WAIT_FOR_EXPLORERS))
        nb, resources = super()._preprocess(nb, resources)
        if executes:
            nb.cells.pop()
        has_widgets = "widgets" in nb.metadata
        resources["clrp_offline"] = {
            "require_js": require_js(),
            "widget_modules": widget_module_scripts(nb.metadata) if has_widgets else [],
            "html_manager": html_manager_js() if has_widgets else "",
        }
        return nb, resources
