"""Why a path is not an exportable notebook, in the words both the exporter and its command line
use (standard library only, so the command line can say it before nbconvert and torch load)."""

from __future__ import annotations

from pathlib import Path


def missing(source: Path) -> str:
    """The message for a path that is not a file."""
    return f"No notebook at {source}: give the path of an existing .ipynb file."


def unreadable(source: Path, err: Exception) -> str:
    """The message for a file that cannot be read as a notebook because of ``err``."""
    detail = " ".join(str(err).split())[:200]
    return (
        f"{source} is not a readable Jupyter notebook ({type(err).__name__}: {detail}); "
        "open it in Jupyter and save it again, or restore it from a backup."
    )
