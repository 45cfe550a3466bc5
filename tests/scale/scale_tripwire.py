"""A tiny CNN with a forward pre-hook that logs every call and can kill or stall its worker.

The hook fires on the batch holding the *poison* image (pixel [0, 0, 0] == POISON):
- ``<folder>/kill`` present: the first worker to claim (delete) it SIGKILLs itself;
- ``<folder>/hold`` present: it waits until the file is gone, then raises if ``abort`` exists.
Each call appends ``<pid> <sha1 of the batch>`` to ``<folder>/calls.log``. The module is
pickled by value (cloudpickle), so dask workers need not import it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections import Counter
from pathlib import Path

import torch
from torch import nn

POISON = 0.5


def make_model() -> nn.Sequential:
    """Conv-ReLU-MaxPool x2, Flatten, Linear: 3x16x16 input, 5 classes."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(96, 5),
    )
    return model.eval().requires_grad_(False)


def batch_hash(x: torch.Tensor) -> str:
    return hashlib.sha1(x.detach().contiguous().numpy().tobytes()).hexdigest()[:16]


class Tripwire:
    """The forward pre-hook (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)

    def __call__(self, module: nn.Module, args: tuple) -> None:
        x = args[0]
        folder = Path(self.folder)
        with open(folder / "calls.log", "a") as log:
            log.write(f"{os.getpid()} {batch_hash(x)}\n")
        if not bool((x[:, 0, 0, 0] == POISON).any()):
            return
        if _claim(folder / "kill"):
            os.kill(os.getpid(), signal.SIGKILL)
        if (folder / "hold").exists():
            (folder / "held").write_text(str(os.getpid()))
            while (folder / "hold").exists():
                time.sleep(0.02)
            if (folder / "abort").exists():
                (folder / "aborted").write_text(str(os.getpid()))
                raise RuntimeError("stalled chunk aborted by the test")


def _claim(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def armed_model(folder: Path) -> nn.Sequential:
    """``make_model()`` with a :class:`Tripwire` on its input, logging to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    model = make_model()
    model.register_forward_pre_hook(Tripwire(folder))
    return model


def calls(folder: Path) -> Counter:
    """Forward calls per batch hash, and the set of pids per hash, from ``calls.log``."""
    lines = (folder / "calls.log").read_text().split() if (folder / "calls.log").exists() else []
    pairs = list(zip(lines[0::2], lines[1::2], strict=True))
    return Counter(h for _, h in pairs)


def pids(folder: Path, digest: str) -> set[str]:
    lines = (folder / "calls.log").read_text().split()
    return {pid for pid, h in zip(lines[0::2], lines[1::2], strict=True) if h == digest}
