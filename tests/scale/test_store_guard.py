"""Store guards (issue 10) on a real dask cluster and real zarr: one run per store (stale locks
taken over), killed creations cleaned up, a damaged store refused on resume."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading

import pytest
import torch
from scale_tripwire import make_model

from clrp_widgets.engine.errors import ConfigError
from clrp_widgets.scale import explain_dataset, local_cluster
from clrp_widgets.scale.store import completed

N, CHUNK = 8, 4


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    with local_cluster(n_workers=1) as cluster, Client(cluster) as active:
        yield active


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return torch.rand(N, 3, 16, 16, generator=generator), torch.arange(N) % 5


def run(store, client, data):
    return explain_dataset(
        make_model(), data, store, methods=("clrp1",), input_bounds=(0.0, 1.0), client=client,
        chunk=CHUNK, progress=False,
    )  # fmt: skip


def _write_lock(store, pid: int) -> None:
    holder = {"host": socket.gethostname(), "pid": pid, "started": "2026-01-01T00:00:00+00:00"}
    (store.parent / f".{store.name}.lock").write_text(json.dumps(holder))


def test_two_runs_started_together_never_fail_raw_nor_duplicate(client, data, tmp_path):
    from clrp_widgets.engine.errors import StoreInUseError

    store = tmp_path / "run.zarr"
    start = threading.Barrier(2)
    outcomes: list = [None, None]

    def one(k: int) -> None:
        start.wait()
        try:
            outcomes[k] = run(store, client, data)
        except BaseException as err:
            outcomes[k] = err

    threads = [threading.Thread(target=one, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(e, StoreInUseError) for e in errors), errors
    assert all("being written by another run" in str(e) for e in errors)
    reports = [o for o in outcomes if not isinstance(o, BaseException)]
    assert sum(r.computed for r in reports) == N // CHUNK  # every chunk computed exactly once
    assert (completed(store) != 0).all()
    assert not (tmp_path / ".run.zarr.lock").exists()


def test_a_live_lock_refuses_clearly_and_a_dead_one_is_taken_over(client, data, tmp_path):
    from clrp_widgets.engine.errors import StoreInUseError

    store = tmp_path / "run.zarr"
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]) as alive:
        try:
            _write_lock(store, alive.pid)
            with pytest.raises(
                StoreInUseError, match=rf"process {alive.pid} on .*\.run\.zarr\.lock"
            ):
                run(store, client, data)
            assert not store.exists()
        finally:
            alive.kill()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    _write_lock(store, int(dead.stdout))
    assert run(store, client, data).computed == N // CHUNK
    assert not (tmp_path / ".run.zarr.lock").exists()


def test_staging_folders_of_killed_creations_are_removed(client, data, tmp_path):
    store = tmp_path / "run.zarr"
    staging = tmp_path / ".run.zarr.0badc0de.creating"
    (staging / "input").mkdir(parents=True)
    (staging / "zarr.json").write_text("{}")
    other = tmp_path / ".other.zarr.0badc0de.creating"  # another store's: left alone
    other.mkdir()
    run(store, client, data)
    assert not staging.exists() and other.exists()


def test_a_store_with_layers_deleted_by_hand_is_refused_on_resume(client, data, tmp_path):
    store = tmp_path / "run.zarr"
    run(store, client, data)
    shutil.rmtree(store / "layers")
    with pytest.raises(ConfigError, match=r"damaged: 'layers/.*' is missing.*Delete the store"):
        run(store, client, data)
