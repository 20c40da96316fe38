"""Helpers for the reliability tests: the feed and the dashboard as real processes, WebSocket and book helpers.

- ``start_dashboard_process(feed_address, port, limits=..., log_path=...)``: ``python -m dashboard`` (or, with
  ``limits``, the same app built with ``ApiLimits(**limits)``, which the command line does not expose);
- ``wait_http(url, timeout)``, ``rss_mb(pid)`` (processes are stopped with tests/waiting.py's ``stop_process``);
- ``levels_to_units(spec, levels)``: JSON ``[[price, size], ...]`` back to integer ``(ticks, lots)``;
- ``check_against_truth(spec, seed, rate, messages)``: every live book is a true book, in order;
- ``recv_json(ws, timeout)``: one JSON message from a ``websockets`` client, bounded in time;
- the module fixture ``system``: a feed process and a dashboard process, shared by a test module.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import orjson
import psutil
import pytest
from websockets.asyncio.client import ClientConnection

from feed_server.launch import http_ok, wait_ready
from feed_server.protocol.instruments import InstrumentSpec
from tests.servers import REPO_ROOT, child_env, free_port, start_feed_process, wait_for_health
from tests.truth import TruthCursor
from tests.waiting import stop_process

__all__ = [
    "DashboardProcess",
    "System",
    "check_against_truth",
    "levels_to_units",
    "recv_json",
    "rss_mb",
    "start_dashboard_process",
    "start_system",
    "wait_http",
]

_LIMITS_APP = """
import logging
import sys
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
from nicegui import ui
from dashboard.main import TITLE, build_app
from dashboard.api.fanout import ApiLimits
limits = ApiLimits(**{k: float(v) if "." in v else int(v) for k, v in (a.split("=", 1) for a in sys.argv[3:])})
build_app(sys.argv[1], limits)
ui.run(host="127.0.0.1", port=int(sys.argv[2]), reload=False, show=False, title=TITLE, show_welcome_message=False)
"""


@dataclass
class DashboardProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path is not None else ""


def start_dashboard_process(
    feed_address: str,
    port: int | None = None,
    *,
    limits: dict[str, float] | None = None,
    log_path: Path | None = None,
) -> DashboardProcess:
    """The dashboard as its own process on 127.0.0.1 (stderr to ``log_path`` if given). Kill it in a finally."""
    port = port or free_port()
    if limits is None:
        args = ["-m", "dashboard", "--feed-address", feed_address, "--host", "127.0.0.1", "--port", str(port)]
    else:
        args = ["-c", _LIMITS_APP, feed_address, str(port), *(f"{k}={v}" for k, v in limits.items())]
    log: IO[bytes] | int = subprocess.DEVNULL
    if log_path is not None:
        log = log_path.open("wb")
    try:
        process = subprocess.Popen(
            [sys.executable, *args], cwd=REPO_ROOT, env=child_env(), stdout=log, stderr=log, start_new_session=True
        )
    finally:
        if not isinstance(log, int):
            log.close()
    return DashboardProcess(process, port, log_path)


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers 200 (StartupError after ``timeout`` s or if ``process`` exits)."""
    wait_ready(url, lambda: http_ok(url), timeout, [process] if process is not None else [], interval=0.1)


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def levels_to_units(spec: InstrumentSpec, levels: list[list[float]]) -> list[tuple[int, int]]:
    """JSON levels (numbers exactly rounded to tick and lot) back to integer (ticks, lots)."""
    out: list[tuple[int, int]] = []
    for price, size in levels:
        ticks = Decimal(repr(price)) / spec.tick_size
        lots = Decimal(repr(size)) / spec.lot_size
        assert ticks == ticks.to_integral_value(), f"{price} is not a multiple of {spec.tick_size}"
        assert lots == lots.to_integral_value(), f"{size} is not a multiple of {spec.lot_size}"
        out.append((int(ticks), int(lots)))
    return out


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
    """The next message of a WebSocket client, decoded (TimeoutError after ``timeout`` s)."""
    async with asyncio.timeout(timeout):
        data = await ws.recv()
    message: dict[str, Any] = orjson.loads(data)
    return message


def check_against_truth(spec: InstrumentSpec, seed: int, rate: float, messages: list[dict[str, Any]]) -> int:
    """Assert every live book message is the true book (the same deterministic simulator as the feed's
    ``--seed``/``--rate``) after a whole number of events, later messages never earlier states (tests/truth.py),
    with the true checksum; returns how many were checked. One feed session's messages."""
    truth = TruthCursor(spec, seed, rate)
    checked = 0
    last_live = -1
    for message in messages:
        if message["stale"]:
            continue
        sequence = message["sequence"]
        assert sequence >= last_live, f"{spec.instrument_id}: a live book went back in time: {sequence} < {last_live}"
        last_live = sequence
        bids = levels_to_units(spec, message["bids"])
        asks = levels_to_units(spec, message["asks"])
        truth.seek(bids, asks, f"the live book at sequence {sequence}")
        assert message["checksum"] == truth.sim.book.checksum()
        checked += 1
    return checked


@dataclass
class System:
    feed: subprocess.Popen[bytes]
    feed_port: int
    dashboard: DashboardProcess

    @property
    def feed_address(self) -> str:
        return f"127.0.0.1:{self.feed_port}"


def start_system(*feed_args: str, log_path: Path | None = None, limits: dict[str, float] | None = None) -> System:
    """A feed process and a dashboard process pointed at it, both serving. The caller stops them (``stop``)."""
    feed_port = free_port()
    feed = start_feed_process(feed_port, *feed_args)
    dashboard: DashboardProcess | None = None
    try:
        wait_for_health(f"127.0.0.1:{feed_port}", 20.0)
        dashboard = start_dashboard_process(f"127.0.0.1:{feed_port}", limits=limits, log_path=log_path)
        wait_http(dashboard.url + "/api/instruments", 30.0, dashboard.process)
    except BaseException:
        if dashboard is not None:
            stop_process(dashboard.process)
        stop_process(feed)
        raise
    return System(feed, feed_port, dashboard)


def stop_system(system: System) -> None:
    try:
        stop_process(system.dashboard.process)
    finally:
        stop_process(system.feed)


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    """A feed (seed 3, 100 events/s per instrument) and a dashboard, as processes, for one test module."""
    running = start_system("--seed", "3", "--rate", "100")
    try:
        yield running
    finally:
        stop_system(running)
