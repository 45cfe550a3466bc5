"""``python -m clrp_widgets.evaluate``: the evaluation CLI (see :mod:`clrp_widgets.metrics.cli`).

Importing this module makes ``clrp_widgets.evaluate`` name the module instead of the function
``cw.evaluate``; the module is therefore callable and forwards to
:func:`clrp_widgets.metrics.runner.evaluate`, so ``cw.evaluate(...)`` works either way.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from clrp_widgets.metrics.cli import main  # light: the runner (torch) loads on first call


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from clrp_widgets.metrics.runner import evaluate

        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
