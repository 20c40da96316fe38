"""Fixtures and helpers for the page tests: a feed process for the ``user`` fixture, and ``run.py`` for a browser."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest
from playwright.sync_api import BrowserContext, Page, ViewportSize, sync_playwright

from feed_server.launch import StartupError, http_ok, wait_ready
from tests.servers import CHROMIUM, child_env, free_port, start_feed_process, wait_for_health
from tests.servers import CHROMIUM_FLAGS as CHROMIUM_ARGS
from tests.waiting import stop_process

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "REPO",
    "chromium",
    "page_feed",
    "running_dashboard",
    "stop_process",
    "watched_tab",
]

REPO = Path(__file__).resolve().parents[2]
PAGE_FEED_RATE = "200"  # order events per second per instrument: far more messages than page refreshes


@pytest.fixture(scope="module")
def page_feed() -> Iterator[str]:
    """A real feed server process; the dashboard app (dashboard/main.py) is pointed at it by env var."""
    port = free_port()
    process = start_feed_process(port, "--seed", "7", "--rate", PAGE_FEED_RATE)
    address = f"127.0.0.1:{port}"
    previous = os.environ.get("DASHBOARD_FEED_ADDRESS")
    try:
        wait_for_health(address, 15.0)
        os.environ["DASHBOARD_FEED_ADDRESS"] = address
        yield address
    finally:
        if previous is None:
            os.environ.pop("DASHBOARD_FEED_ADDRESS", None)
        else:
            os.environ["DASHBOARD_FEED_ADDRESS"] = previous
        stop_process(process)


@contextmanager
def running_dashboard(*args: str, startup: float = 30.0) -> Iterator[str]:
    """``python run.py --port P --feed-port Q *args``; yields the page's URL.

    On the way out run.py is stopped (SIGTERM) and its log must hold no traceback and no ERROR line.
    """
    port, feed_port = free_port(), free_port()
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "run.py", "--host", "127.0.0.1", "--port", str(port), "--feed-port", str(feed_port), *args],
        cwd=REPO,
        env=child_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        try:
            wait_ready("run.py", lambda: http_ok(url), startup, [process], interval=0.1)
        except StartupError as exc:
            raise AssertionError(f"{exc}: {read_log(log)}") from None
        yield url
    finally:
        stop_process(process)
        text = read_log(log)
        log.close()
    assert "Traceback" not in text and " ERROR " not in text, text


def read_log(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")


@contextmanager
def chromium(profile: Path) -> Iterator[BrowserContext]:
    """Debian's headless Chromium with a fresh profile in ``profile``, closed on the way out."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield context
        finally:
            context.close()


def watched_tab(context: BrowserContext, errors: list[str], viewport: ViewportSize | None = None) -> Page:
    """A new tab (15 s timeouts) whose JavaScript errors, uncaught or on the console, are added to ``errors``."""
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    tab.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    tab.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    if viewport is not None:
        tab.set_viewport_size(viewport)
    return tab
