"""Lazy names for package ``__init__`` modules (PEP 562): a name's module is imported on first use,
so that importing the package, or a light command-line entry point inside it, stays fast."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_names(
    package: str, exports: dict[str, str], listed: list[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps each name to its module.

    The value is the module's attribute of that name, or the module itself when it has none (a
    submodule exported under its own name). It is stored in the package, so it is imported once.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(exports[name])
        value = getattr(module, name, module)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return listed

    return __getattr__, __dir__
