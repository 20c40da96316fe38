"""Shared dashboard fixtures: a real feed server process and a real ``python -m dashboard`` process on it.

Both are processes (not in-process servers) so that NiceGUI's global app is never built twice in the test
process; they are started once per module and always killed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import pytest

from feed_server.launch import http_ok, wait_ready
from tests.servers import (
    REPO_ROOT,
    child_env,
    feed_process,
    free_port,
)
from tests.waiting import stop_process

FEED_RATE = "200"  # order events per second per instrument


@dataclass(frozen=True)
class Dashboard:
    """A running ``python -m dashboard`` process."""

    process: subprocess.Popen[bytes]
    port: int
    feed_address: str
    log: IO[bytes]  # the process's stderr (a temporary file, never a pipe that could fill up)

    def log_text(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> str:
        """Stop the process (SIGTERM, then SIGKILL) and close its log; the log's text."""
        stop_process(self.process)
        text = self.log_text()
        self.log.close()
        return text

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, instrument_id: str, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/ws/market_data/{instrument_id}" + (f"?{query}" if query else "")


def start_dashboard(feed_address: str, port: int | None = None, **env: str) -> Dashboard:
    """``python -m dashboard`` on a free port; waits (bounded) until /api/instruments answers 200."""
    port = port or free_port()
    child = child_env()
    child.update(env)
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-m", "dashboard", "--feed-address", feed_address, "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT,
        env=child,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    dashboard = Dashboard(process, port, feed_address, log)
    try:
        url = f"{dashboard.http}/api/instruments"
        wait_ready(url, lambda: http_ok(url), 60.0, [process])
    except BaseException:
        stop_process(process)
        raise
    return dashboard


@pytest.fixture(scope="module")
def feed_address() -> Iterator[str]:
    """A real feed server process (seed 3, rate FEED_RATE); yields its address."""
    with feed_process("--seed", "3", "--rate", FEED_RATE) as address:
        yield address


@pytest.fixture(scope="module")
def dashboard(feed_address: str) -> Iterator[Dashboard]:
    """``python -m dashboard`` fed by ``feed_address`` (send timeout 1 s so slow clients are dropped fast)."""
    running = start_dashboard(feed_address, DASHBOARD_SEND_TIMEOUT="1")
    try:
        yield running
    finally:
        errors = running.stop()
        assert "Traceback" not in errors and " ERROR " not in errors, errors


__all__ = ["Dashboard", "dashboard", "feed_address", "start_dashboard", "stop_process"]
