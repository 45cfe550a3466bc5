"""Stopping a running computation part-way, from the thread that runs it.

Inside :func:`stoppable`, every tensor operation of the calling thread first asks ``stop()`` and
raises :class:`Stopped` once it says so. A dispatch mode (the mechanism of
``torch.utils.flop_counter``) sees every ATen operation, also those that the autograd engine runs
in a backward pass; a function mode would not see inside ``torch.autograd.grad``. Modes are per
thread, so other threads are not affected.

The engine restores the model after an error (flags, no hooks) and caches a forward pass only once
it is complete, so a stopped call leaves nothing half-done behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode

from clrp_widgets.engine.errors import CLRPError


class Stopped(CLRPError):
    """The computation was stopped part-way, because ``stop()`` said so."""


class _StopWhen(TorchDispatchMode):
    def __init__(self, stop: Callable[[], bool]) -> None:
        super().__init__()
        self.stop = stop

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if self.stop():
            raise Stopped("stopped part-way: a newer request took over")
        return func(*args, **(kwargs or {}))


def stoppable(stop: Callable[[], bool]) -> TorchDispatchMode:
    """A context manager: torch work of this thread raises :class:`Stopped` once ``stop()``.

    Parameters
    ----------
    stop : callable
        Asked before every tensor operation; cheap (e.g. compares two ints).

    Examples
    --------
    >>> with stoppable(lambda: job_id != latest_id):  # doctest: +SKIP
    ...     explainer.explain(x, target)
    """
    return _StopWhen(stop)
