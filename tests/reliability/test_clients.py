"""Slow and misbehaving WebSocket clients against a dashboard process with small limits.

The dashboard's command line does not expose ``ApiLimits``; the dashboard process here is the same app built
with ``ApiLimits(max_connections=24, send_timeout=1.0)`` (see conftest.start_dashboard_process).

- Past ``max_connections`` a client gets ``too_many_connections`` and close code 1013; a freed slot is reusable.
- Many clients that never read (raw TCP sockets with a tiny receive buffer) delay nobody: a reading client
  keeps receiving, the dashboard's memory stays bounded, and each of them is dropped (its connection aborted)
  once a send has blocked for ``send_timeout``.
- Clients that send frames (text, binary, 1 MiB) are ignored and keep receiving books; one that sends a frame
  past the server's size limit loses only its own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import socket
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.reliability.conftest import System, recv_json, rss_mb, start_system, stop_system
from tests.servers import open_raw_websocket
from tests.waiting import eventually

MAX_CONNECTIONS = 24
SEND_TIMEOUT = 1.0
NEVER_READERS = 16


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    log_path = tmp_path_factory.mktemp("limits") / "dashboard.log"
    running = start_system(
        "--seed",
        "4",
        "--rate",
        "60",
        log_path=log_path,
        limits={"max_connections": MAX_CONNECTIONS, "send_timeout": SEND_TIMEOUT},
    )
    try:
        yield running
    finally:
        stop_system(running)


def ws_url(system: System, instrument_id: str, query: str = "depth=10&interval_ms=0&trades=0") -> str:
    return f"{system.dashboard.ws_url}/ws/market_data/{instrument_id}?{query}"


class Reader:
    """A well-behaved client that reads every book and records when each arrived."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.lags_ms: list[float] = []

    async def run(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await recv_json(ws, timeout=10.0)
            if message["type"] == "book":
                self.arrivals.append(loop.time())
                self.lags_ms.append((time.time_ns() - message["timestamp_ns"]) / 1e6)

    def count_since(self, t: float) -> int:
        return sum(1 for a in self.arrivals if a >= t)

    def longest_gap_since(self, t: float) -> float:
        times = [a for a in self.arrivals if a >= t]
        return max((b - a for a, b in itertools.pairwise(times)), default=float("inf"))


def server_side_open(pid: int, sockets: list[socket.socket]) -> int:
    """How many of ``sockets`` the dashboard process (``pid``) still holds a connection for (seen with psutil)."""
    ports = {sock.getsockname()[1] for sock in sockets}
    held = {
        conn.raddr.port
        for conn in psutil.Process(pid).net_connections(kind="tcp")
        if conn.raddr and conn.status == psutil.CONN_ESTABLISHED
    }
    return len(ports & held)


async def open_reader(
    system: System, instrument_id: str = "AAPL"
) -> tuple[ClientConnection, Reader, asyncio.Task[None]]:
    ws = await connect(ws_url(system, instrument_id), open_timeout=10)
    reader = Reader()
    task = asyncio.create_task(reader.run(ws), name=f"reader {instrument_id}")
    return ws, reader, task


async def stop_reader(ws: ClientConnection, task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    async with asyncio.timeout(5):
        await ws.close()


async def test_past_max_connections_a_client_gets_1013_and_a_freed_slot_is_reused(limited: System) -> None:
    clients: list[ClientConnection] = []
    try:
        for i in range(MAX_CONNECTIONS):
            ws = await connect(ws_url(limited, ["AAPL", "MSFT", "EUR-USD"][i % 3], "interval_ms=1000"), open_timeout=10)
            clients.append(ws)
            assert (await recv_json(ws))["type"] == "book"
        async with connect(ws_url(limited, "AAPL"), open_timeout=10) as extra:
            error = await recv_json(extra)
            assert error["type"] == "error" and error["code"] == "too_many_connections", error
            with pytest.raises(ConnectionClosed):
                await recv_json(extra)
            assert extra.close_code == 1013
        await clients.pop().close()
        first: dict[str, object] = {}

        async def slot_reusable() -> bool:  # the server needs a moment to notice the close
            async with connect(ws_url(limited, "AAPL"), open_timeout=10) as again:
                first.update(await recv_json(again))
            return first["type"] == "book"

        await eventually(slot_reusable, 15.0, lambda: f"the freed slot reusable; got {first}", every=0.2)
    finally:
        for ws in clients:
            async with asyncio.timeout(5):
                await ws.close()


async def ws_clients(system: System, count: int) -> bool:
    """Whether the dashboard's ``marketdata_ws_clients`` gauge says ``count``."""
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
        text = (await http.get(f"{system.dashboard.url}/metrics")).text
    return f"\nmarketdata_ws_clients {float(count)}\n" in f"\n{text}"


async def test_never_reading_clients_delay_nobody_stay_bounded_and_are_dropped(limited: System) -> None:
    await eventually(lambda: ws_clients(limited, 0), 10.0, "the previous test's connections gone", every=0.1)
    dashboard_pid = limited.dashboard.process.pid
    ws, reader, task = await open_reader(limited)
    sockets: list[socket.socket] = []
    try:
        await asyncio.sleep(2.0)  # the baseline: the reader's rate over 2 s alone
        loop = asyncio.get_running_loop()
        baseline_start = loop.time() - 2.0
        baseline_rate = reader.count_since(baseline_start) / 2.0
        rss_before = rss_mb(dashboard_pid)
        instruments = ["BTC-USD", "ETH-USD", "ES-Z6", "EUR-USD", "USD-JPY", "MSFT", "AAPL"]
        sockets = [
            open_raw_websocket(
                limited.dashboard.port,
                f"/ws/market_data/{instruments[i % 7]}?depth=100&interval_ms=0&trades=1",
            )
            for i in range(NEVER_READERS)
        ]
        flooded = loop.time()
        peak_rss = rss_before
        for _ in range(16):  # 8 s with the never-readers connected
            await asyncio.sleep(0.5)  # the window under test, sampled
            peak_rss = max(peak_rss, rss_mb(dashboard_pid))
        flooded_rate = reader.count_since(flooded) / (loop.time() - flooded)
        gap = reader.longest_gap_since(flooded)
        still_open = server_side_open(dashboard_pid, sockets)

        def all_dropped() -> bool:
            nonlocal still_open
            still_open = server_side_open(dashboard_pid, sockets)
            return still_open == 0

        with contextlib.suppress(AssertionError):  # the rest must be dropped soon (asserted below, with numbers)
            await eventually(all_dropped, 15.0, "every never-reader dropped", every=0.25)
        all_dropped_after = loop.time() - flooded
        print(
            f"\nslow clients: reader {baseline_rate:.0f} books/s before, {flooded_rate:.0f} books/s with "
            f"{NEVER_READERS} never-readers (longest gap {gap * 1000:.0f} ms); dashboard RSS {rss_before:.1f} MB "
            f"-> peak {peak_rss:.1f} MB; all {NEVER_READERS} never-readers dropped "
            f"{all_dropped_after:.1f} s after connecting"
            if still_open == 0
            else f"; {still_open} still open"
        )
        assert reader.count_since(flooded) > 20, "the reading client starved while others did not read"
        assert gap < 2.0, f"the reading client waited {gap:.2f} s for a book"
        assert peak_rss - rss_before < 100, f"the dashboard grew from {rss_before:.0f} to {peak_rss:.0f} MB"
        assert still_open == 0, f"{still_open} of {NEVER_READERS} never-reading clients were never dropped"
        assert not task.done(), "the reading client was disconnected"
        log = limited.dashboard.log_text()
        assert len(re.findall("dropped a slow WebSocket client", log)) >= NEVER_READERS, log[-2000:]
    finally:
        for sock in sockets:
            sock.close()
        await stop_reader(ws, task)


async def test_frames_sent_by_clients_are_ignored_and_everyone_keeps_being_served(limited: System) -> None:
    ws, reader, task = await open_reader(limited, "MSFT")
    try:
        async with connect(ws_url(limited, "EUR-USD"), open_timeout=10, max_size=None) as chatty:
            assert (await recv_json(chatty))["type"] == "book"
            await chatty.send("hello")
            await chatty.send(b"\x00\xff" * 10)
            await chatty.send('{"type": "subscribe", "instrument_id": "BTC-USD"}')
            await chatty.send(b"x" * (1 << 20))
            for _ in range(20):
                await chatty.send("ping")
            started = asyncio.get_running_loop().time()
            for _ in range(5):
                message = await recv_json(chatty)
                assert message["type"] == "book" and message["instrument_id"] == "EUR-USD"
            assert chatty.close_code is None
        # A frame past the server's message size limit (uvicorn's 16 MiB) ends that connection only.
        async with connect(ws_url(limited, "USD-JPY"), open_timeout=10, max_size=None) as huge:
            assert (await recv_json(huge))["type"] == "book"
            with pytest.raises(ConnectionClosed):
                await huge.send(b"y" * (17 << 20))
                async with asyncio.timeout(10):
                    while True:
                        await huge.recv()
        async with connect(ws_url(limited, "USD-JPY"), open_timeout=10) as after:
            assert (await recv_json(after))["type"] == "book"
        # The well-behaved reader was served all along and still is: more books keep arriving (the window
        # above may be short, so wait, boundedly, rather than expect a count within it).
        await eventually(lambda: not task.done() and reader.count_since(started) > 5, 10.0, "more books", every=0.05)
        assert not task.done()
    finally:
        await stop_reader(ws, task)
