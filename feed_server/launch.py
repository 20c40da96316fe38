"""Starting the product's processes and telling when they are up: what ``run.py`` does, and what the tests, the
benchmark and the scripts reuse for their own processes.

- :func:`child_env`: the environment for a child ``python -m ...`` (the repo importable, output unbuffered, no
  pytest variables);
- :func:`http_ok`: whether a URL answers 200 (the dashboard's readiness); the feed's is
  feed_server.client.health.feed_serving;
- :func:`wait_ready`: poll a readiness probe, bounded, while watching the processes that should provide it.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from feed_server.protocol.errors import MarketDataError

__all__ = ["REPO_ROOT", "StartupError", "child_env", "http_ok", "wait_ready"]



class StartupError(MarketDataError):
    """A process started by the launcher (run.py) did not come up: it exited, or was not ready in time."""


REPO_ROOT = Path(__file__).resolve().parent.parent


def child_env() -> dict[str, str]:
    """The current environment without PYTEST_* variables, unbuffered, with the repo on the import path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """Whether ``url`` answers a GET with status 200 within ``timeout`` seconds (never through a proxy)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_ready(
    what: str,
    ready: Callable[[], bool],
    timeout: float,
    processes: Sequence[subprocess.Popen[bytes]] = (),
    *,
    interval: float = 0.05,
    give_up: Callable[[], bool] = lambda: False,
) -> bool:
    """Poll ``ready()`` until it is true (True), or ``give_up()`` is (False, e.g. on a signal).

    Raises StartupError when one of ``processes`` exits first, or after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not ready():
        if give_up():
            return False
        for process in processes:
            if process.poll() is not None:
                raise StartupError(f"{what}: process {process.pid} exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise StartupError(f"{what}: not ready within {timeout:g} s")
        time.sleep(interval)
    return True
