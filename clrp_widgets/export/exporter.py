"""``ClrpHTMLExporter``: nbconvert's lab HTML, made self-contained so widgets render offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nbconvert.exporters import HTMLExporter
from nbformat import NotebookNode
from traitlets import default

from clrp_widgets.export.assets import html_manager_js, require_js, widget_module_scripts

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


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
        widget state that says which widget modules the page needs.
        """
        nb, resources = super()._preprocess(nb, resources)
        has_widgets = "widgets" in nb.metadata
        resources["clrp_offline"] = {
            "require_js": require_js(),
            "widget_modules": widget_module_scripts(nb.metadata) if has_widgets else [],
            "html_manager": html_manager_js() if has_widgets else "",
        }
        return nb, resources
