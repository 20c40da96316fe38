"""The raw JSON WebSocket ``/ws/market_data/{id}`` against a real dashboard process fed by a real feed server."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from itertools import pairwise

import pytest
from websockets.asyncio.client import connect

from tests.dashboard.conftest import Dashboard, start_dashboard
from tests.dashboard.ws_helpers import SPECS, check_book, check_reason, closed_with, recv_book, recv_json, to_units
from tests.servers import free_port, open_raw_websocket, start_feed_process, wait_for_health
from tests.waiting import eventually, stop_process


async def test_full_book_on_connect_then_verified_changes(dashboard: Dashboard) -> None:
    spec = SPECS["AAPL"]
    async with connect(dashboard.ws("AAPL", "depth=20")) as ws:
        first = await recv_book(ws, 10.0)
        check_book(first, spec, 20)
        assert len(first["bids"]) == 20 and len(first["asks"]) == 20, "the full book at the asked depth"
        previous = first["sequence"]
        for _ in range(30):
            message = await recv_book(ws)
            check_book(message, spec, 20)
            assert message["sequence"] > previous, "sequences rise"
            assert message["stale"] is False
            previous = message["sequence"]


async def test_default_depth_is_10_and_trades_come_on_the_same_socket_when_asked(dashboard: Dashboard) -> None:
    spec = SPECS["BTC-USD"]
    async with connect(dashboard.ws("BTC-USD", "trades=1")) as ws:
        book = await recv_book(ws, 10.0)
        assert len(book["bids"]) == 10 and len(book["asks"]) == 10
        check_book(book, spec, 10)
        trade = None
        async with asyncio.timeout(10.0):
            while trade is None:
                data = await recv_json(ws)
                if data["type"] == "trade":
                    trade = data
    assert set(trade) == {"type", "instrument_id", "sequence", "timestamp_ns", "price", "size", "aggressor"}
    assert trade["instrument_id"] == "BTC-USD" and trade["aggressor"] in {"buy", "sell"}
    assert to_units(trade["price"], spec.tick_size) > 0 and to_units(trade["size"], spec.lot_size) > 0


@pytest.mark.parametrize("query", ["depth=1", "trades=0&depth=1"])
async def test_books_only_by_default_and_with_trades_0(dashboard: Dashboard, query: str) -> None:
    async with connect(dashboard.ws("BTC-USD", query)) as ws:
        for _ in range(100):
            assert (await recv_json(ws))["type"] == "book"


async def test_trades_come_in_the_flush_before_the_book_at_the_interval(dashboard: Dashboard) -> None:
    """With interval_ms, trades are flushed together with the book: no frame comes between two flushes."""
    async with connect(dashboard.ws("BTC-USD", "trades=1&interval_ms=200")) as ws:
        await recv_book(ws, 10.0, live=False)
        flushes: list[tuple[float, list[str]]] = []  # (arrival of the flush's first frame, types in it)
        trades = 0
        async with asyncio.timeout(10.0):
            while len(flushes) < 8 or trades == 0:
                data = await recv_json(ws)
                if not flushes or flushes[-1][1][-1] == "book":
                    flushes.append((time.monotonic(), []))
                flushes[-1][1].append(data["type"])
                trades += data["type"] == "trade"
                if data["type"] == "trade":
                    assert data["sequence"] is not None
    complete = [types for _, types in flushes if types[-1] == "book"]
    assert all(set(types[:-1]) <= {"trade"} for types in complete), "trades, then one book, per flush"
    starts = [t for t, _ in flushes]
    gaps = [b - a for a, b in pairwise(starts)]
    assert min(gaps) >= 0.17, gaps  # never more often than interval_ms (less scheduling slack)


async def test_interval_ms_is_the_least_time_between_two_books(dashboard: Dashboard) -> None:
    async with connect(dashboard.ws("ETH-USD", "interval_ms=200&trades=0")) as fast_feed:
        await recv_book(fast_feed, 10.0)
        arrivals = []
        for _ in range(6):
            await recv_book(fast_feed, 2.0, live=False)
            arrivals.append(time.monotonic())
    gaps = [b - a for a, b in pairwise(arrivals)]
    assert min(gaps) >= 0.17, gaps  # 200 ms less scheduling slack on the receiving side
    assert max(gaps) < 1.5, gaps  # and the instrument changes often enough to fill (almost) every interval


async def test_interval_0_sends_every_change(dashboard: Dashboard) -> None:
    async with connect(dashboard.ws("ETH-USD", "trades=0")) as ws:
        await recv_book(ws, 10.0)
        start = time.monotonic()
        count = 0
        while time.monotonic() - start < 1.0:
            await recv_book(ws, 2.0, live=False)
            count += 1
    assert count > 50, f"only {count} books in 1 s at rate {200}/s"


@pytest.mark.parametrize(
    ("instrument_id", "shown"),
    [
        ("NOPE", "'NOPE'"),
        ("x" * 500, "'" + "x" * 64 + "'... (500 characters)"),
        ("Ünïcødé €", "Ünïcødé €"),
        ("a/b/../c", "a/b/../c"),
    ],
)
async def test_unknown_instrument_gets_error_then_4404(dashboard: Dashboard, instrument_id: str, shown: str) -> None:
    async with connect(dashboard.ws(instrument_id)) as ws:
        error = await recv_json(ws)
        assert error["type"] == "error" and error["code"] == "unknown_instrument"
        assert shown in error["message"]
        assert len(error["message"]) < 120
        assert await closed_with(ws) == 4404


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("depth=0", "'0'"),
        ("depth=101", "'101'"),
        ("depth=abc", "'abc'"),
        ("depth=1.5", "'1.5'"),
        ("interval_ms=-1", "'-1'"),
        ("interval_ms=60001", "'60001'"),
        ("trades=maybe", "'maybe'"),
        ("depth=" + "9" * 300, "'" + "9" * 64 + "'... (300 characters)"),
    ],
)
async def test_bad_parameter_gets_error_then_4400(dashboard: Dashboard, query: str, named: str) -> None:
    async with connect(dashboard.ws("AAPL", query)) as ws:
        error = await recv_json(ws)
        assert error["type"] == "error" and error["code"] == "bad_request"
        assert named in error["message"]
        assert await closed_with(ws) == 4400


async def test_unknown_parameters_and_client_frames_are_ignored(dashboard: Dashboard) -> None:
    async with connect(dashboard.ws("MSFT", "foo=bar&&=&%zz&depth=5")) as ws:
        for i in range(200):
            await ws.send("garbage " * (i % 50))
            await ws.send(os.urandom(200))
        book = await recv_book(ws, 10.0)
        check_book(book, SPECS["MSFT"], 5)
        await recv_book(ws, 5.0)


async def test_a_client_that_never_reads_delays_nobody_and_is_dropped(dashboard: Dashboard) -> None:
    stuck = [open_raw_websocket(dashboard.port, "/ws/market_data/BTC-USD?depth=100") for _ in range(3)]
    try:
        async with connect(dashboard.ws("BTC-USD", "depth=100&trades=0")) as ws:
            await recv_book(ws, 10.0)
            # For 6 s (the stuck clients fill their buffers, then block past the 1 s send timeout): books keep
            # arriving, fresh and often.
            start = time.monotonic()
            count = 0
            worst_lag = 0.0
            while time.monotonic() - start < 6.0:
                message = await recv_book(ws, 1.0, live=False)
                worst_lag = max(worst_lag, time.time() - message["timestamp_ns"] / 1e9)
                count += 1
        assert count > 150, count
        assert worst_lag < 1.0, f"a book arrived {worst_lag:.3f} s after its feed event"
        # The stuck clients were dropped: once we drain what was buffered for them, their connections end (reset
        # or closed). A connection that stays open with nothing more coming (neither dropped nor served), or one
        # that keeps being served (never dropped), fails.
        for sock in stuck:
            assert await asyncio.to_thread(drain_until_dropped, sock) < 2 * 1024 * 1024
        assert dashboard.log_text().count("dropped a slow WebSocket client of BTC-USD") >= len(stuck)
    finally:
        for sock in stuck:
            sock.close()


def drain_until_dropped(sock: socket.socket, quiet: float = 5.0, limit: int = 2 * 1024 * 1024) -> int:
    """Read ``sock`` until the server has closed or reset it; return the bytes read before that.

    Fails if ``quiet`` seconds pass with neither data nor a close, or if more than ``limit`` bytes arrive (far more
    than the documented buffers: the client is being served, not dropped)."""
    sock.settimeout(quiet)
    received = 0
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            raise AssertionError(f"neither dropped nor served: no data and no close for {quiet} s") from None
        if not chunk:
            return received
        received += len(chunk)
        assert received < limit, f"still served after {received} bytes: not dropped"


async def test_too_many_connections_are_refused_with_1013(feed_address: str) -> None:
    small = await asyncio.to_thread(start_dashboard, feed_address, DASHBOARD_MAX_CONNECTIONS="2")
    try:
        url = f"ws://127.0.0.1:{small.port}/ws/market_data/AAPL"
        async with connect(url) as one, connect(url) as two:
            await recv_book(one, 10.0)
            await recv_book(two, 10.0)
            async with connect(url) as three:
                error = await recv_json(three)
                assert error["type"] == "error" and error["code"] == "too_many_connections"
                assert await closed_with(three) == 1013
        # A slot is free again once the server has seen those closes (it may take a moment: until then a new
        # client is refused with 1013, "try again later", which is what it does here, boundedly).
        async def slot_free() -> bool:
            async with connect(url) as again:
                first = await recv_json(again, 10.0)
            assert first["type"] == "book" or first["code"] == "too_many_connections", first
            return bool(first["type"] == "book")

        await eventually(slot_free, 10.0, "a closed client's slot freed", every=0.1)
    finally:
        small.stop()


async def test_stale_while_the_feed_is_down_and_live_again_after_a_restart() -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    feed = start_feed_process(port, "--seed", "5", "--rate", "50")
    board: Dashboard | None = None
    try:
        await asyncio.to_thread(wait_for_health, address, 15.0)
        board = await asyncio.to_thread(start_dashboard, address)
        async with connect(board.ws("EUR-USD", "trades=0")) as ws:
            live = await recv_book(ws, 10.0)
            feed.kill()
            feed.wait(5.0)
            killed = time.monotonic()
            async with asyncio.timeout(5.0):
                while not (message := await recv_json(ws))["stale"]:
                    pass
            assert time.monotonic() - killed < 3.0, "stale within the 2 s heartbeat watchdog"
            check_reason(message)
            assert message["sequence"] >= live["sequence"]
            feed = start_feed_process(port, "--seed", "6", "--rate", "50")
            again = await recv_book(ws, 15.0)
            check_book(again, SPECS["EUR-USD"], 10)
    finally:
        stop_process(feed)
        if board is not None:
            board.stop()
