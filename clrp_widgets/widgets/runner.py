"""Last-request-wins execution of widget work in one background thread.

Front-end events (clicks, picker changes) must never block the kernel, and rapid clicks must never
show a stale map. ``LatestRunner.submit`` replaces any pending job and returns at once; a job
publishes its results through ``Job.publish``, which only runs while that job is still the newest
request. Superseded results are discarded; multi-stage jobs stop early once ``Job.current()`` is
false, and :meth:`LatestRunner.cancel` makes the running job stale without starting a new one.

Busy is raised under the same lock that the worker lowers it under, so the flag can never end up
raised with nothing left to do (a submit racing the worker's last job).

At interpreter exit every runner's work is made stale and awaited: a daemon thread killed inside
a torch operation aborts the process ("terminate called without an active exception").
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

_RUNNERS: weakref.WeakSet[LatestRunner] = weakref.WeakSet()


@dataclass
class Job:
    """A submitted piece of work; ``run(job)`` computes and calls ``job.publish(...)``."""

    request: int
    run: Callable[[Job], None]
    runner: LatestRunner = field(repr=False)

    def current(self) -> bool:
        """Whether no newer request has been submitted since this one."""
        return self.runner.latest == self.request

    def publish(self, show: Callable[[], None]) -> bool:
        """Run ``show`` (which updates the widgets) only if this is still the newest request."""
        with self.runner.lock:
            if not self.current():
                self.runner.discarded += 1
                return False
            show()
            return True


class LatestRunner:
    """One worker thread; a newer submission supersedes pending work (last request wins)."""

    def __init__(self, on_busy: Callable[[bool], None], on_error: Callable[[Exception], None]):
        self.lock = threading.RLock()
        self._wake = threading.Condition(self.lock)
        self._on_busy = on_busy
        self._on_error = on_error
        self._pending: Job | None = None
        self._running = False
        self._thread: threading.Thread | None = None
        self.latest = 0
        self.discarded = 0
        self.completed = 0
        _RUNNERS.add(self)

    def submit(self, run: Callable[[Job], None]) -> int:
        """Queue ``run`` as the newest request (dropping any older pending one); return its id."""
        with self._wake:
            self.latest += 1
            self._pending = Job(self.latest, run, self)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="clrp-runner", daemon=True)
                self._thread.start()
            self._on_busy(True)
            self._wake.notify_all()
        return self.latest

    def cancel(self) -> bool:
        """Drop pending work and make the running job stale (it stops at its next check).

        Returns whether anything was cancelled.
        """
        with self._wake:
            if self.idle:
                return False
            self.latest += 1
            self._pending = None
            if not self._running:
                self._on_busy(False)
            self._wake.notify_all()
            return True

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until every submitted request has been handled; False on timeout."""
        with self._wake:
            return self._wake.wait_for(lambda: self._pending is None and not self._running, timeout)

    @property
    def idle(self) -> bool:
        return self._pending is None and not self._running

    def _loop(self) -> None:
        while True:
            with self._wake:
                if not self._wake.wait_for(lambda: self._pending is not None, timeout=30.0):
                    self._thread = None
                    return
                job, self._pending, self._running = self._pending, None, True
            assert job is not None
            try:
                job.run(job)
            except Exception as exc:  # shown in the widget; the worker keeps serving
                with self.lock:
                    if job.current():
                        self._on_error(exc)
            finally:
                with self._wake:
                    self._running = False
                    self.completed += 1
                    if self._pending is None:
                        self._on_busy(False)
                    self._wake.notify_all()


@atexit.register
def _stop_all_at_exit(timeout: float = 10.0) -> None:
    """Make every runner's work stale and wait for its worker to leave torch (at exit)."""
    for runner in list(_RUNNERS):
        with runner._wake:
            runner.latest += 1  # the running job stops at its next tensor operation
            runner._pending = None
            runner._wake.notify_all()
        runner.wait(timeout)
