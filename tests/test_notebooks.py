"""Every ``notebooks/*.ipynb`` executes top to bottom without an error (nbclient, no network).

Each notebook runs in a temporary copy of the ``notebooks/`` folder, so the repository stays clean
(no outputs written back, no files left behind by the notebooks).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 300


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_executes_without_error(notebook: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS_DIR, workdir, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    nb = nbformat.read(workdir / notebook.name, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error

    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code_cells, f"{notebook.name} has no code cells"
    assert all(cell.get("execution_count") for cell in code_cells), "a code cell did not run"
    errors = [o for c in code_cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{notebook.name} produced error outputs: {errors}"
