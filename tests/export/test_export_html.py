"""The offline HTML exporter: inlined runtime, named AMD modules, CLI errors (no browser here).

The real-browser check of an exported file is ``tests/browser/test_export_offline.py``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup

from clrp_widgets.engine.errors import ConfigError
from clrp_widgets.export import ClrpHTMLExporter, NotebookExecutionError, export_notebook
from clrp_widgets.export.assets import (
    WIDGET_STATE_MIME,
    find_nbextension,
    html_manager_js,
    named_amd_module,
    script_safe,
    widget_modules,
)

WIDGET_CELLS = [
    "import ipywidgets as w\nw.IntSlider(value=3, description='slide')",
    "import bqplot as bq\n"
    "x, y = bq.OrdinalScale(), bq.LinearScale()\n"
    "bars = bq.Bars(x=['a', 'b'], y=[1, 2], scales={'x': x, 'y': y})\n"
    "bq.Figure(marks=[bars], axes=[bq.Axis(scale=x), bq.Axis(scale=y, side='left')])",
]


def _write_notebook(path: Path, sources: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Export probe: $e^{i\\pi} = -1$")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, path)
    return path


def _state(*modules: tuple[str, str]) -> dict:
    models = {
        str(i): {"model_module": model, "state": {"_view_module": view}}
        for i, (model, view) in enumerate(modules)
    }
    return {"widgets": {WIDGET_STATE_MIME: {"state": models}}}


def test_widget_modules_skips_base_modules_and_deduplicates():
    metadata = _state(
        ("@jupyter-widgets/controls", "@jupyter-widgets/controls"),
        ("bqplot", "bqplot"),
        ("bqscales", ""),
        ("anywidget", "anywidget"),
        ("@jupyter-widgets/base", "@jupyter-widgets/base"),
    )
    assert widget_modules(metadata) == ["anywidget", "bqplot", "bqscales"]
    assert widget_modules({}) == []


def test_script_safe_removes_every_way_to_leave_the_script_element():
    code = "var a = '</script><script>alert(1)</SCRIPT>'; var b = '<!--';"
    safe = script_safe(code)
    assert "</script" not in safe.lower() and "<!--" not in safe
    # the JavaScript value is unchanged: \x3C is '<'
    assert safe.replace("\\x3C", "<") == code


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_named_amd_module_registers_an_anonymous_define_under_the_module_name():
    bundle = "define(['@jupyter-widgets/base'], function (base) { return {v: 1}; });"
    script = (
        "var calls = []; var window = {define: function () {"
        " calls.push(Array.prototype.map.call(arguments, function (a) {"
        " return typeof a === 'function' ? 'fn' : a; })); }};"
        "window.define.amd = {jQuery: true};"
        f"{named_amd_module('my-widgets', bundle)}"
        "console.log(JSON.stringify(calls));"
    )
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [["my-widgets", ["@jupyter-widgets/base"], "fn"]]


def test_html_manager_icon_fonts_become_data_urls():
    code = html_manager_js()
    assert not re.search(r'\.p\+"[0-9a-f]{20}\.', code), "a font still points at a URL"
    assert code.count('"data:font/woff2;base64,') >= 2
    assert "sourceMappingURL=libembed-amd.js.map" not in code


def test_missing_widget_module_names_the_module_and_the_fix():
    with pytest.raises(ConfigError, match=r"no-such-widgets.*install"):
        find_nbextension("no-such-widgets")


@pytest.mark.slow
def test_nbconvert_entry_point_writes_a_self_contained_page(tmp_path):
    notebook = _write_notebook(tmp_path / "probe.ipynb", WIDGET_CELLS)
    subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to=clrp_html", "--execute", str(notebook)],
        check=True,
        capture_output=True,
    )
    html = (tmp_path / "probe.html").read_text(encoding="utf-8")
    page = BeautifulSoup(html, "html.parser")
    assert not page.select("script[src], link[href], iframe[src]"), "the page loads a file"
    assert "cdnjs.cloudflare.com/ajax/libs/mathjax" not in html and "x-mathjax-config" not in html
    modules = [tag["data-clrp-widget-module"] for tag in page.select("[data-clrp-widget-module]")]
    assert modules == ["bqplot", "bqscales"]
    assert len(page.select("script[data-clrp-html-manager]")) == 1
    assert WIDGET_STATE_MIME in html


@pytest.mark.slow
def test_nbconvert_execute_waits_for_the_explorer_to_finish(tmp_path):
    cells = [
        "import clrp_widgets as cw\n"
        "explorer = cw.Explorer(cw.load_model('shapes'), cw.scenes(1, seed=0).tensor()[0])\n"
        "explorer"
    ]
    notebook = _write_notebook(tmp_path / "explorer.ipynb", cells)
    subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to=clrp_html", "--execute", str(notebook)],
        check=True,
        capture_output=True,
    )
    page = BeautifulSoup((tmp_path / "explorer.html").read_text(encoding="utf-8"), "html.parser")
    state = json.loads(page.select_one(f"script[type='{WIDGET_STATE_MIME}']").string)["state"]
    states = [m["state"] for m in state.values()]
    thumbs = [s for s in states if "thumb_size" in s]
    heatmaps = [s for s in states if "panel_titles" in s]
    assert thumbs and thumbs[0]["channels"] and not thumbs[0]["busy"]  # the last stage ran
    assert len(heatmaps) == 2 and all(h["state"]["map_version"] >= 1 for h in heatmaps)
    assert not any(h["busy"] for h in heatmaps)
    assert "WAIT_FOR_EXPLORERS" not in page.text and "wait_for_explorers" not in page.text


def test_notebook_without_widgets_inlines_no_widget_runtime(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    html, _ = ClrpHTMLExporter().from_notebook_node(nb)
    assert "data-clrp-html-manager" not in html and 'src="http' not in html


@pytest.mark.slow
def test_cli_names_the_failing_cell(tmp_path):
    notebook = _write_notebook(tmp_path / "broken.ipynb", ["x = 1", "x / 0"])
    output = tmp_path / "o.html"
    result = subprocess.run(
        [sys.executable, "-m", "clrp_widgets.export", str(notebook), "-o", str(output)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "cell 2 (In [2], code starting 'x / 0')" in result.stderr
    assert "ZeroDivisionError" in result.stderr and "--no-execute" in result.stderr
    assert not output.exists()


def test_no_execute_exports_the_saved_notebook_and_missing_files_are_input_errors(tmp_path):
    notebook = _write_notebook(tmp_path / "saved.ipynb", ["raise RuntimeError('never run')"])
    out = export_notebook(notebook, tmp_path / "out" / "saved.html", execute=False)
    assert "never run" in out.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match=r"existing \.ipynb"):
        export_notebook(tmp_path / "missing.ipynb", tmp_path / "x.html")
    assert issubclass(NotebookExecutionError, RuntimeError)


@pytest.mark.filterwarnings("ignore:Your element with mimetype:UserWarning")  # nbconvert's own
def test_no_execute_warns_when_widget_views_have_no_saved_state(tmp_path):
    nb = nbformat.v4.new_notebook()
    view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    output = nbformat.v4.new_output(
        "display_data", data={"application/vnd.jupyter.widget-view+json": view}
    )
    nb.cells = [nbformat.v4.new_code_cell("w.IntSlider()", outputs=[output])]
    notebook = tmp_path / "unsaved.ipynb"
    nbformat.write(nb, notebook)
    with pytest.warns(UserWarning, match="no saved widget state"):
        export_notebook(notebook, tmp_path / "unsaved.html", execute=False)


# ----- every CLI failure is one line naming the file and the fix (issue 10)


def _export_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "clrp_widgets.export", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    # the kernel process shares stderr; its own log lines start with [IPKernelApp]
    lines = [ln for ln in result.stderr.strip().splitlines() if not ln.startswith("[IPKernelApp]")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_cli_corrupt_and_missing_notebooks_are_one_line(tmp_path):
    corrupt = tmp_path / "corrupt.ipynb"
    corrupt.write_text('{"cells": [ {"cell_type": "code", "sour')
    line = _one_error_line(_export_cli(str(corrupt), "-o", str(tmp_path / "o.html")))
    assert "corrupt.ipynb" in line and "not a readable Jupyter notebook" in line
    invalid = tmp_path / "invalid.ipynb"
    invalid.write_text(json.dumps({"cells": 3, "nbformat": 4, "nbformat_minor": 5}))
    line = _one_error_line(_export_cli(str(invalid), "--no-execute"))
    assert "invalid.ipynb" in line and "save it again" in line
    line = _one_error_line(_export_cli(str(tmp_path / "missing.ipynb")))
    assert "missing.ipynb" in line and "existing .ipynb" in line
    assert not list(tmp_path.glob("*.html")) and not list(tmp_path.glob(".*.tmp"))


def test_cli_refuses_a_missing_or_non_json_notebook_before_loading_torch(tmp_path):
    """A mistyped path fails at once (no torch, no nbconvert: ~0.1 s instead of ~10 s)."""
    (tmp_path / "broken.ipynb").write_text("{not json")
    probe = (
        "import sys\n"
        "from clrp_widgets.export.__main__ import main\n"
        "codes = [main([sys.argv[1]]), main([sys.argv[2]])]\n"
        "heavy = [m for m in ('torch', 'nbconvert', 'nbformat') if m in sys.modules]\n"
        "print(codes, heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "gone.ipynb"), str(tmp_path / "broken.ipynb")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "[1, 1] []", result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert "gone.ipynb" in lines[0] and "existing .ipynb" in lines[0]
    assert "broken.ipynb" in lines[1] and "not a readable Jupyter notebook" in lines[1]


def test_cli_unwritable_output_is_one_line_and_leaves_no_temporary_file(tmp_path):
    notebook = _write_notebook(tmp_path / "ok.ipynb", ["1 + 1"])
    (tmp_path / "taken").mkdir()
    line = _one_error_line(
        _export_cli(str(notebook), "--no-execute", "-o", str(tmp_path / "taken"))
    )
    assert "taken" in line and "check the path" in line
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_cli_cell_timeout_is_one_line_and_keeps_an_older_export_marked_stale(tmp_path):
    notebook = _write_notebook(tmp_path / "slow.ipynb", ["x = 1", "import time\ntime.sleep(60)"])
    output = tmp_path / "slow.html"
    output.write_text("an older export")
    line = _one_error_line(_export_cli(str(notebook), "-o", str(output), "--timeout", "3"))
    assert "timed out in cell 2" in line and "import time" in line
    assert "--timeout" in line and "slow.html was not written" in line and "earlier" in line
    assert output.read_text() == "an older export"
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_cli_dead_kernel_is_one_line(tmp_path):
    notebook = _write_notebook(tmp_path / "dies.ipynb", ["import os\nos._exit(1)"])
    line = _one_error_line(_export_cli(str(notebook), "-o", str(tmp_path / "d.html")))
    assert "kernel died" in line and "import os" in line and "d.html was not written" in line
    assert not (tmp_path / "d.html").exists()
