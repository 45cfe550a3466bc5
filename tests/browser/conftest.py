"""Real-browser fixtures: Debian's chromium via pytest-playwright (never `playwright install`)."""

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


# ---- JupyterLab server on 127.0.0.1 (helper D; shared/RECIPES.md "Real-browser tests") ----

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
# true once the notebook's kernel is up and idle (JupyterLab exposes its app as window.jupyterapp)
KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === "idle";
}"""


def kernel_state(log: Path, accept, timeout: float = 30.0) -> dict:
    """The newest state line of ``log`` (JSON lines the notebook appends) that ``accept`` takes,
    waiting for it to appear."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists():
            lines = log.read_text().splitlines()
            if lines and accept(json.loads(lines[-1])):
                return json.loads(lines[-1])
        time.sleep(0.1)
    last = log.read_text().splitlines()[-1] if log.exists() else "no state written"
    raise AssertionError(f"the kernel never reached the expected state; last: {last}")


@dataclass
class LabServer:
    """A running JupyterLab: ``url(path)`` gives a tokenised address, ``root`` its notebook dir."""

    base: str
    token: str
    root: Path

    def url(self, path: str) -> str:
        """The address of ``path``; a Lab page opens with a fresh workspace (``reset``), so
        notebooks opened by earlier test modules on this server are not restored beside it."""
        reset = "&reset" if path.startswith("lab") else ""
        return f"{self.base}/{path}?token={self.token}{reset}"

    def run_all(self, page, notebook: str) -> None:
        """Open ``notebook`` (under ``root``) in ``page``, wait for its kernel, run all cells."""
        page.goto(self.url(f"lab/tree/{notebook}"))
        page.wait_for_function(KERNEL_IDLE, timeout=90_000)
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(command, *, ready: str, log_path: Path, env: dict, cwd=None, timeout: float = 90):
    """Run ``command(port)`` as a local server; yield its base URL once ``ready`` answers.

    The process is stopped (terminate, then kill) on exit, whatever happened.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command(port), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/{ready}", timeout=2):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        name = command(port)[2]
                        raise RuntimeError(f"{name} did not start; see {log_path}") from None
                    time.sleep(0.3)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def lab(tmp: Path, env: dict | None = None):
    """JupyterLab on 127.0.0.1 with its root, config, runtime, workspaces and settings dirs in
    ``tmp`` (news fetching off); yields a :class:`LabServer`, stopped on exit.

    ``env`` is the server's (and its kernels') environment, default ``os.environ``.
    """
    root = tmp / "root"
    root.mkdir()
    env = dict(os.environ if env is None else env)
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_WORKSPACES_DIR"):
        env[var] = str(tmp / var.lower())
    settings = tmp / "settings"
    env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false"}))
    token = secrets.token_hex(16)

    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.allow_root=True",
            "--LabApp.expose_app_in_browser=True",
            "--LabServerApp.extension_manager=readonly",
        ]

    ready = f"api/status?token={token}"
    with serve(command, ready=ready, log_path=tmp / "lab.log", env=env) as base:
        yield LabServer(base, token, root)


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    """JupyterLab for the browser tests (see :func:`lab`); stopped at the end of the session."""
    with lab(tmp_path_factory.mktemp("lab")) as server:
        yield server
