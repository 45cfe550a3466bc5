"""A model unpickled in a fresh process (a dask worker) keeps its own hooks through every call.

torch numbers hook handles with a process-wide counter that unpickling does not advance. In a
fresh process the engine's first hook would get the id of the user's hook, replace it for the
pass and delete it on removal. Each case pickles a model whose hook has id 0 in one new
interpreter and explains it in another, where that counter starts at 0 again.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HOOK_MODULE = '''
class Counting:
    """A forward (pre-)hook that counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, module, *args):
        self.calls += 1
'''

PICKLE = """
import pickle, sys
sys.path[:0] = [{folder!r}, {tests!r}]
import counting_hook
from engine_nets import make_cnn
model = make_cnn()
getattr(model[{at}] if {at} >= 0 else model, {register!r})(counting_hook.Counting())
open({folder!r} + "/model.pkl", "wb").write(pickle.dumps(model))
"""

EXPLAIN = """
import pickle, sys, torch
sys.path.insert(0, {folder!r})
from clrp_widgets.engine import RelevanceEngine
from clrp_widgets.engine.baselines import baseline
model = pickle.loads(open({folder!r} + "/model.pkl", "rb").read())
module = model[{at}] if {at} >= 0 else model
hooks = getattr(module, {table!r})
assert list(hooks) == [0], hooks  # the id it had when pickled
x = torch.rand(2, 3, 16, 16)
{call}
print([[type(hook).__name__, hook.calls] for hook in hooks.values()])
"""

# each call's first own hook lands where the user's hook is: the engine hooks every module from
# the root down, guided backprop pre-hooks every ReLU, Grad-CAM forward-hooks the last conv
CASES = {
    "engine": (
        -1,
        "register_forward_pre_hook",
        "_forward_pre_hooks",
        "RelevanceEngine(model, input_bounds=(0.0, 1.0)).run(x, 1, 'clrp1', capture='all')",
    ),
    "guided_backprop": (
        1,
        "register_forward_pre_hook",
        "_forward_pre_hooks",
        "baseline(model, x, 1, 'guided_backprop')",
    ),
    "gradcam": (3, "register_forward_hook", "_forward_hooks", "baseline(model, x, 1, 'gradcam')"),
}


def python(script: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.parametrize("case", list(CASES))
def test_a_fresh_process_keeps_the_models_hooks(case, tmp_path):
    at, register, table, call = CASES[case]
    (tmp_path / "counting_hook.py").write_text(HOOK_MODULE)
    folder, tests = str(tmp_path), str(Path(__file__).parent)
    python(PICKLE.format(folder=folder, tests=tests, at=at, register=register))
    done = python(EXPLAIN.format(folder=folder, at=at, table=table, call=call))
    assert done.stdout.split("\n")[-2] == "[['Counting', 1]]"  # still there, and it fired once
