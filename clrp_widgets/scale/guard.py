"""Guards of a data-set store: one run at a time, no leftover staging folders, intact structure.

- :func:`store_lock`: a cooperative lock file ``.<store>.lock`` next to the store (it exists
  before the store does, so it also covers creating it). It records the holder's host, process id
  and start time. A second run refuses with :class:`StoreInUseError`, naming the holder; a lock
  left by a process that died on this host is stale and taken over.
- :func:`clean_staging`: removes the ``.<store>.*.creating`` folders of creations that were killed.
- :func:`verify_structure`: a resumed store must still hold every array, with its shape.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import zarr

from clrp_widgets.engine.errors import ConfigError, StoreInUseError


def lock_path(path: Path) -> Path:
    """The lock file of the store at ``path``."""
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def store_lock(path: Path) -> Iterator[None]:
    """Hold the store's lock for the block; raise StoreInUseError if a live run holds it."""
    lock = lock_path(path)
    token = uuid.uuid4().hex
    holder = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "token": token,
    }
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            other = _read(lock)
            if not _is_stale(other, lock):
                raise StoreInUseError(_busy_message(path, lock, other)) from None
            _take_over(lock)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(holder, f)
        break
    else:  # pragma: no cover - three stale takeovers lost to other runs in a row
        raise StoreInUseError(_busy_message(path, lock, _read(lock)))
    try:
        yield
    finally:
        if _read(lock).get("token") == token:
            lock.unlink(missing_ok=True)


def _read(lock: Path) -> dict:
    try:
        value = json.loads(lock.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _is_stale(holder: dict, lock: Path, grace_s: float = 10.0) -> bool:
    """A lock whose process is gone (this host), or unreadable and older than ``grace_s``."""
    if not holder:  # being written right now, or damaged: stale only once it is old
        try:
            return time.time() - lock.stat().st_mtime > grace_s
        except FileNotFoundError:
            return True
    if holder.get("host") != socket.gethostname():
        return False  # cannot see another machine's processes
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def _take_over(lock: Path) -> None:
    """Remove a stale lock so that exactly one of several racing runs can create a new one."""
    moved = lock.with_name(f"{lock.name}.stale-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(FileNotFoundError):
        os.replace(lock, moved)
        moved.unlink(missing_ok=True)


def _busy_message(path: Path, lock: Path, holder: dict) -> str:
    who = (
        f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"
        if holder
        else "a run that is starting"
    )
    return (
        f"store {str(path)!r} is being written by another run ({who}); wait for it to finish "
        f"(rerunning then resumes the store), or pass a new store path. If that run is dead, "
        f"delete {str(lock)!r}."
    )


def clean_staging(path: Path) -> list[Path]:
    """Remove the staging folders of killed store creations (call while holding the lock)."""
    found = sorted(path.parent.glob(f".{path.name}.*.creating"))
    for staging in found:
        shutil.rmtree(staging, ignore_errors=True)
    return found


def verify_structure(path: Path, expected: dict[str, dict[str, tuple[int, ...]]]) -> None:
    """Every array ``expected[group][name]`` must exist in the store with that shape.

    Raises
    ------
    ConfigError
        Naming the first missing or reshaped array and the fix.
    """
    # not the consolidated metadata: it still lists what was deleted from the folders
    root = zarr.open_group(path, mode="r", use_consolidated=False)
    for group, arrays in expected.items():
        for name, shape in arrays.items():
            key = f"{group}/{name}" if group else name
            try:
                found = root[key]
            except KeyError:
                found = None
            if not isinstance(found, zarr.Array):
                problem = f"{key!r} is missing"
            elif tuple(found.shape) != tuple(shape):
                problem = f"{key!r} has shape {tuple(found.shape)}, expected {tuple(shape)}"
            else:
                continue
            raise ConfigError(
                f"store {str(path)!r} is damaged: {problem} (changed by hand, or a copy that is "
                "incomplete), so it cannot be resumed. Delete the store and rerun, or pass a new "
                "store path."
            )


def expected_arrays(skeleton: dict) -> dict[str, dict[str, tuple[int, ...]]]:
    """The arrays and shapes of a store skeleton (``{group: xarray.Dataset}``)."""
    return {
        group: {name: tuple(np.shape(var)) for name, var in dataset.variables.items()}
        for group, dataset in skeleton.items()
    }
