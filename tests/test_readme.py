"""The README's tour runs as written (keeps the README true)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_tour_snippet_runs():
    text = README.read_text()
    tour = text.split("## A 30-second tour", 1)[1]
    code = re.search(r"```python\n(.*?)```", tour, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README tour", "exec"), namespace)
    lrp, clrp, x = namespace["lrp"], namespace["clrp"], namespace["x"]
    assert lrp.shape == clrp.shape == x.shape
    assert float(clrp.min()) >= 0.0  # the CLRP map is clipped
    assert set(
        namespace["scene"].class_names[i]
        for i in namespace["scene"].object_class.values[0]
        if i >= 0
    ) == {"star", "cross"}
