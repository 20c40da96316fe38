"""Process helpers: free ports, a clean child environment, start/stop with a guaranteed kill, readiness.

Every process the bench starts goes through :func:`started`, a context manager that kills the process
(and its children, e.g. ``run.py``'s feed server) on exit whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

from feed_server.client.health import feed_serving
from feed_server.launch import REPO_ROOT, StartupError, child_env, http_ok, wait_ready
from tests.servers import free_port
from tests.waiting import stop_process, wait_until

__all__ = [
    "REPO_ROOT",
    "Proc",
    "child_env",
    "client_result",
    "cpu_percent",
    "free_port",
    "raise_fd_limit",
    "run_client",
    "started",
    "wait_for_grpc_health",
    "wait_for_http",
    "wait_for_output",
]

log = logging.getLogger(__name__)

def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file soft limit towards ``wanted`` (up to the hard limit); the new limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


class Proc:
    """A started process, its log file and its psutil handle."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path
        self.ps = psutil.Process(popen.pid)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with code {code}:\n{self.tail()}")

    def descendant(self, marker: str) -> psutil.Process:
        """This process or a descendant whose command line contains ``marker``."""
        for proc in [self.ps, *self.ps.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                if marker in " ".join(proc.cmdline()):
                    return proc
        raise RuntimeError(f"{self.name}: no process with {marker!r} in its command line")


@contextlib.contextmanager
def started(name: str, args: Sequence[str], grace: float = 3.0) -> Iterator[Proc]:
    """Start ``python <args>`` in the repo root; on exit SIGTERM it (then SIGKILL) and kill its children."""
    log_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    log_path = log_dir / "output.log"
    with log_path.open("wb") as sink:
        popen = subprocess.Popen(
            [sys.executable, *args], cwd=REPO_ROOT, env=child_env(), stdout=sink, stderr=subprocess.STDOUT
        )
    proc = Proc(name, popen, log_path)
    try:
        yield proc
    finally:
        stop_process(proc.popen, grace)


def wait_for_grpc_health(proc: Proc, address: str, timeout: float) -> None:
    """Poll the standard gRPC health service until it answers SERVING."""
    _wait(proc, f"{proc.name} SERVING at {address}", lambda: feed_serving(address), timeout)


def wait_for_http(proc: Proc, url: str, timeout: float, interval: float = 0.02) -> float:
    """Poll ``url`` until it answers 200; the monotonic time at which it did."""
    _wait(proc, f"{proc.name} serving {url}", lambda: http_ok(url), timeout, interval)
    return time.monotonic()


def _wait(proc: Proc, what: str, ready: Callable[[], bool], timeout: float, interval: float = 0.05) -> None:
    try:
        wait_ready(what, ready, timeout, [proc.popen], interval=interval)
    except StartupError as exc:
        raise TimeoutError(f"{exc}:\n{proc.tail()}") from None


def cpu_percent(processes: Sequence[psutil.Process], seconds: float) -> list[float]:
    """Each process's CPU over the same ``seconds`` window, in percent of one core."""
    before = [p.cpu_times() for p in processes]
    start = time.monotonic()
    time.sleep(seconds)
    after = [p.cpu_times() for p in processes]
    elapsed = time.monotonic() - start
    return [100 * ((a.user + a.system) - (b.user + b.system)) / elapsed for a, b in zip(after, before, strict=True)]


def wait_for_output(proc: Proc, marker: str, timeout: float) -> None:
    """Wait until the process has printed ``marker`` (and is alive meanwhile)."""

    def printed() -> bool:
        proc.check_alive()
        return marker in proc.output()

    wait_until(printed, timeout, lambda: f"{proc.name} did not print {marker!r}:\n{proc.tail()}")


def run_client(name: str, args: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run a bench client process to its end and return the JSON object on its last stdout line."""
    with started(name, args) as proc:
        return client_result(proc, timeout)


def client_result(proc: Proc, timeout: float) -> dict[str, Any]:
    """Wait up to ``timeout`` for a started bench client to end; the JSON object on its last stdout line."""
    try:
        proc.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{proc.name} did not finish within {timeout} s:\n{proc.tail()}") from None
    if proc.popen.returncode != 0:
        raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
    lines = [line for line in proc.output().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{proc.name} printed no result:\n{proc.tail()}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result
