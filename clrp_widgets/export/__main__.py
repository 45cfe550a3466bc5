"""``python -m clrp_widgets.export NB.ipynb -o OUT.html [--no-execute]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clrp_widgets.export import notebook_errors


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m clrp_widgets.export",
        description="Execute a notebook and write it as one self-contained HTML file whose "
        "widgets render with no network.",
    )
    parser.add_argument("notebook", help="the .ipynb file")
    parser.add_argument("-o", "--output", help="HTML file to write (default: NOTEBOOK.html)")
    parser.add_argument(
        "--no-execute", action="store_true", help="export the saved outputs without running"
    )
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    args = parser.parse_args(argv)
    output = args.output or str(args.notebook).removesuffix(".ipynb") + ".html"
    refused = _refused(Path(args.notebook))
    if refused:
        return _fail(f"{refused}{_kept(output)}")
    from clrp_widgets.engine.errors import CLRPError  # torch and nbconvert: only from here on
    from clrp_widgets.export.run import export_notebook

    try:
        path = export_notebook(
            args.notebook, output, execute=not args.no_execute, timeout=args.timeout
        )
    except CLRPError as err:
        return _fail(f"{err}{_kept(output)}")
    except OSError as err:
        name = err.filename or output
        return _fail(f"cannot read or write {name}: {err.strerror or err}; check the path.")
    except KeyboardInterrupt:
        return _fail(f"interrupted{_kept(output)}", 130)
    except Exception as err:  # one line, never a traceback (the CLI contract)
        return _fail(
            f"exporting {args.notebook} failed: {type(err).__name__}: {err}. Check the notebook; "
            f"if it runs in Jupyter, please report this.{_kept(output)}"
        )
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, self-contained: open it offline)")
    return 0


def _refused(notebook: Path) -> str | None:
    """Why ``notebook`` cannot be exported, found without nbformat (a missing file, or one
    that is not JSON), or None; the full check follows in ``export_notebook``."""
    if not notebook.is_file():
        return notebook_errors.missing(notebook)
    try:
        content = json.loads(notebook.read_bytes())
    except (OSError, ValueError) as err:  # JSONDecodeError, UnicodeDecodeError
        return notebook_errors.unreadable(notebook, err)
    if not isinstance(content, dict):
        return f"{notebook} is not a Jupyter notebook (its JSON is not an object); save it again."
    return None


def _kept(output: str) -> str:
    """Say so when an older export is still at ``output`` (it must not pass for a fresh one)."""
    return (
        f" ({output} was not written; the file there is from an earlier export)"
        if Path(output).exists()
        else f" ({output} was not written)"
    )


def _fail(message: str, status: int = 1) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
