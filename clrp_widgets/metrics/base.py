"""The metric base class: a name, a declared score direction and an aggregate."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from clrp_widgets.metrics.maps import nanmean


class Metric:
    """Base of every metric.

    Attributes
    ----------
    name
        Key used by the runner, the CLI and the result Dataset.
    higher_is_better
        Score direction: True when a larger score means a better explanation.
    unit
        What one value is computed on: ``"item"`` (one map for one image and target) or
        ``"pair"`` (the maps of two classes present in the same image).
    needs_model
        True when the metric runs the model again (perturbation metrics).
    """

    name: ClassVar[str] = ""
    unit: ClassVar[str] = "item"
    needs_model: ClassVar[bool] = False
    higher_is_better: bool = True

    def score(self, *args: Any, **kwargs: Any) -> float:
        """The aggregate score of the per-item values that calling the metric returns."""
        return self.aggregate(self(*args, **kwargs))

    def __call__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise NotImplementedError

    def aggregate(self, values: np.ndarray, classes: np.ndarray | None = None) -> float:
        """Summarise per-item values into one score: the mean over finite values."""
        return nanmean(values)

    def params(self) -> dict[str, object]:
        """The settings that define this metric (stored in result attributes)."""
        skip = ("higher_is_better",)
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in skip}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"
