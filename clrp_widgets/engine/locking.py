"""One lock per model, shared by everything that runs it (engines, explainers, baselines, widgets).

The engine registers hooks on the model's modules and switches its ``training`` flags for a
forward pass, so two calls on one model must never overlap, whichever objects make them: the lock
is keyed by the model, not by the engine. The registry holds models weakly, so a model and its lock
go away together.
"""

from __future__ import annotations

import threading
import weakref

from torch import nn

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_REGISTRY_LOCK = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock of ``model``: hold it around anything that runs or hooks the model."""
    with _REGISTRY_LOCK:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock
