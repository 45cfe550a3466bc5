"""A dask LocalCluster set up for torch work on one machine."""

from __future__ import annotations

import os
from typing import Any

import dask

# dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in every worker, which turns off glibc's
# dynamic mmap threshold: each large torch buffer is then mmapped and unmapped on every use, and
# explaining runs about 2x slower (measured: bench/README.md). Unset, glibc adapts as usual.
TORCH_FRIENDLY = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def local_cluster(n_workers: int | None = None, **kwargs: Any) -> Any:
    """Start a ``distributed.LocalCluster`` suited to ``explain_dataset``.

    Worker processes with one thread each (torch uses one thread per worker), on 127.0.0.1 with
    its HTTP server on a free loopback port, and without dask's malloc trim setting (see
    ``TORCH_FRIENDLY``). ``n_workers`` defaults to ``min(4, cpu_count)``; ``kwargs`` go to
    LocalCluster. Use it as a context manager, with ``distributed.Client(cluster)``.

    Note: the trim setting only stays off if no earlier cluster of this process exported
    MALLOC_TRIM_THRESHOLD_ into ``os.environ`` (dask's nanny does that when it starts workers).
    """
    from distributed import LocalCluster

    settings = {
        "n_workers": n_workers or max(1, min(4, os.cpu_count() or 1)),
        "threads_per_worker": 1,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": "127.0.0.1:0",
        **kwargs,
    }
    with dask.config.set(TORCH_FRIENDLY):
        return LocalCluster(**settings)
