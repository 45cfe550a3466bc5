"""The HTML exporter waits for idle Explorers, so the saved widget state is the finished view."""

from __future__ import annotations

import nbformat
import pytest

from clrp_widgets.export.assets import WIDGET_STATE_MIME
from clrp_widgets.export.run import execute_notebook


@pytest.mark.slow
def test_exported_state_holds_the_finished_explorer(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import clrp_widgets as cw\nexplorer = cw.demo()\nexplorer"),
        nbformat.v4.new_code_cell("1 + 1"),  # the Explorer is still computing: no wait anywhere
    ]
    out = execute_notebook(nb, tmp_path, timeout=300)
    assert len(out.cells) == 2  # the exporter's waiting cell is gone again
    models = out.metadata["widgets"][WIDGET_STATE_MIME]["state"]
    maps = [
        m["state"]
        for m in models.values()
        if m["model_name"] == "AnyModel" and m["state"].get("pixel_clicks")
    ]
    assert len(maps) == 1
    state = maps[0]["state"]
    assert state["map_version"] >= 1 and state["stage"] == "" and state["error"] == ""
    assert maps[0]["panel_titles"][0] != "computing…" and not maps[0]["busy"]
