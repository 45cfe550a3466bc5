"""Execute a notebook (keeping its widget state) and write it as one offline HTML file."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbformat import NotebookNode

from clrp_widgets.engine.errors import CLRPError, InputError
from clrp_widgets.export import notebook_errors
from clrp_widgets.export.assets import WIDGET_STATE_MIME
from clrp_widgets.export.exporter import WAIT_FOR_EXPLORERS, ClrpHTMLExporter
from clrp_widgets.results.files import write_atomic

WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"


class NotebookExecutionError(CLRPError, RuntimeError):
    """A cell of the notebook being exported raised an error."""


def _failing_cell(nb: NotebookNode) -> tuple[int, NotebookNode] | None:
    for index, cell in enumerate(nb.cells):
        if any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
            return index, cell
    return None


def _describe(index: int, cell: NotebookNode) -> str:
    first_line = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
    prompt = f"In [{cell.execution_count}], " if cell.get("execution_count") else ""
    return f"cell {index} ({prompt}code starting {first_line!r})"


def _last_started_cell(nb: NotebookNode) -> str:
    """The code cell that was running when execution stopped (the last one with a prompt)."""
    started = [
        (i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.get("execution_count")
    ]
    if started:
        return _describe(*started[-1])
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    return _describe(*code[0]) if code else "a cell"


def read_notebook(source: Path) -> NotebookNode:
    """Read and validate ``source``; InputError naming the file if it is not a notebook."""
    if not source.is_file():
        raise InputError(notebook_errors.missing(source))
    try:
        return nbformat.read(source, as_version=4)
    except Exception as err:  # NotJSONError, ValidationError, UnicodeDecodeError, KeyError ...
        raise InputError(notebook_errors.unreadable(source, err)) from None


def _has_widget_views_without_state(nb: NotebookNode) -> bool:
    views = any(
        WIDGET_VIEW_MIME in out.get("data", {})
        for cell in nb.cells
        for out in cell.get("outputs", [])
    )
    return views and WIDGET_STATE_MIME not in nb.metadata.get("widgets", {})


def execute_notebook(
    nb: NotebookNode, workdir: Path, *, timeout: int = 600, kernel_name: str = "python3"
) -> NotebookNode:
    """Run every cell of ``nb`` in ``workdir`` and store the widget state in its metadata.

    Raises
    ------
    NotebookExecutionError
        Naming the failing cell (its index and first line) and the error it raised.
    """
    nb.cells.append(nbformat.v4.new_code_cell(WAIT_FOR_EXPLORERS))
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(workdir)}},
        store_widget_state=True,
        extra_arguments=["--IPKernelApp.log_level=ERROR"],  # quiet: no transport warning
    )
    try:
        # the kernel's own log (TCP warnings, its traceback when it is stopped) is not ours to show
        client.execute(stderr=subprocess.DEVNULL)
    except CellTimeoutError:
        raise NotebookExecutionError(
            f"Executing the notebook timed out in {_last_started_cell(nb)}: it ran longer than "
            f"{timeout} s. Pass a larger --timeout, make the cell faster, or export the notebook "
            "as saved with --no-execute."
        ) from None
    except DeadKernelError:
        raise NotebookExecutionError(
            f"The kernel died while running {_last_started_cell(nb)} (out of memory, or a crash "
            "in native code). Run the notebook in Jupyter to find the cause, or export it as "
            "saved with --no-execute."
        ) from None
    except CellExecutionError as err:
        nb.cells.pop()
        found = _failing_cell(nb)
        where = "a cell" if found is None else _describe(*found)
        raise NotebookExecutionError(
            f"Executing the notebook failed in {where}: {err.ename}: {err.evalue}. Fix that "
            "cell (run the notebook in Jupyter to see the full traceback), or export the "
            "notebook as saved with --no-execute."
        ) from err
    nb.cells.pop()  # the waiting cell: its widget messages are in the saved state
    return nb


def export_notebook(
    notebook: str | Path,
    output: str | Path,
    *,
    execute: bool = True,
    timeout: int = 600,
) -> Path:
    """Write ``notebook`` as one self-contained HTML file whose widgets render offline.

    Parameters
    ----------
    notebook
        Path of the ``.ipynb`` file.
    output
        Path of the HTML file to write (its folder is created).
    execute
        Run the notebook first (in its own folder), so its outputs and widget state are fresh.
        Otherwise export what the file holds, which needs its widget state saved.
    timeout
        Seconds each cell may run.

    Returns
    -------
    Path
        The written file. It is written to a temporary file and renamed, so it is never
        half-written, and an export that fails leaves an existing ``output`` untouched.
    """
    source = Path(notebook)
    nb = read_notebook(source)
    if execute:
        nb = execute_notebook(nb, source.resolve().parent, timeout=timeout)
    elif _has_widget_views_without_state(nb):
        warnings.warn(
            f"{source} shows widgets but holds no saved widget state, so they will be blank in "
            "the HTML: export without --no-execute, or save the widget state in Jupyter "
            "(Settings > Save Widget State Automatically) before exporting.",
            stacklevel=2,
        )
    html, _ = ClrpHTMLExporter().from_notebook_node(nb, {"metadata": {"name": source.stem}})
    return write_atomic(output, lambda tmp: tmp.write_text(html, encoding="utf-8"))
