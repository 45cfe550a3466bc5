"""A script that exits while an Explorer still computes exits cleanly (no abort from a daemon
thread killed inside a torch operation)."""

import subprocess
import sys

SCRIPT = """
import clrp_widgets as cw
bundle = cw.load_model("shapes")
cw.Explorer(bundle, cw.scenes(1, seed=7).tensor())  # computes in the background; exit at once
"""


def test_exit_while_the_explorer_computes_is_clean():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "terminate called" not in done.stderr
