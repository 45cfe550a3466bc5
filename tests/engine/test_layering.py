"""The recorder's layering (issue 21): the graph depends on the rules alone, the recording state
on the graph, the op handler on the recording (never on the module hooks), and no engine module
imports another that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "clrp_widgets" / "engine"


def runtime_imports(module: str) -> set[str]:
    """The engine modules ``module`` imports at run time (``TYPE_CHECKING`` blocks left out)."""
    tree = ast.parse((ENGINE / f"{module}.py").read_text())
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found.add((node.module or "").split(".")[0])
            for child in ("body", "orelse", "finalbody", "handlers"):
                visit(getattr(node, child, []) or [])

    visit(tree.body)
    return found - {""}


def closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for dep in runtime_imports(todo.pop()) - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_the_graph_depends_on_the_rules_alone():
    assert runtime_imports("graph") == {"rules"}


def test_the_op_handler_and_the_recording_never_import_the_module_hooks():
    assert "hooks" not in closure("opmode") and "hooks" not in closure("recording")
    assert "opmode" not in closure("recording")


def test_no_engine_module_imports_itself_back():
    modules = [p.stem for p in ENGINE.glob("*.py") if p.stem != "__init__"]
    circles = [m for m in modules if m in closure(m)]
    assert circles == []
