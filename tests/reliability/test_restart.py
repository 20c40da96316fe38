"""The feed process is killed (SIGKILL) mid-stream and restarted on the same port.

A WebSocket client and a real browser tab (headless Debian Chromium) watch through it: the socket must say
``"stale": true`` within 2 s of the kill, the page must leave LIVE; after the restart (a new session whose
sequences start again from 1, with another seed) the same socket, never reconnected, must carry live books
again that are the new feed's true books at their (low) sequence numbers, and the page must say LIVE again.
The recovery time (restart -> first live book on the socket) is measured and printed.

A frozen feed (SIGSTOP: the TCP connection stays up, nothing arrives) must be noticed by the heartbeat
watchdog: stale on the socket within 2 s (+ the hop), and live again once the feed resumes (SIGCONT).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright
from websockets.asyncio.client import ClientConnection, connect

from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from tests.reliability.conftest import levels_to_units, recv_json, start_dashboard_process, wait_http
from tests.servers import CHROMIUM, free_port, start_feed_process, wait_for_health
from tests.servers import CHROMIUM_FLAGS as CHROMIUM_ARGS
from tests.truth import TruthCursor
from tests.waiting import eventually, stop_process

RATE = 100.0
INSTRUMENT = "AAPL"
SPEC = {spec.instrument_id: spec for spec in DEFAULT_INSTRUMENTS}[INSTRUMENT]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (CI installs chromium)")


Predicate = Callable[[dict[str, Any]], bool]


async def next_where(ws: ClientConnection, predicate: Predicate, seconds: float) -> dict[str, Any]:
    """The first book message matching ``predicate`` within ``seconds``."""
    async with asyncio.timeout(seconds):
        while True:
            message = await recv_json(ws, timeout=seconds)
            if message["type"] == "book" and predicate(message):
                return message


async def page_status(page: Page, wanted: set[str], seconds: float) -> str:
    """Poll the page's status label until it shows one of ``wanted``; returns what it showed."""
    seen = [""]

    async def shown() -> bool:
        seen[0] = (await page.inner_text("[data-testid=status]")).strip()
        return seen[0] in wanted

    await eventually(shown, seconds, lambda: f"status in {wanted}; shown {seen[0]!r}", every=0.05)
    return seen[0]


async def test_kill_and_restart_the_feed_the_socket_and_the_page_recover(tmp_path: Path) -> None:
    feed_port = free_port()
    address = f"127.0.0.1:{feed_port}"
    feed = start_feed_process(feed_port, "--seed", "5", "--rate", str(RATE))
    board = None
    try:
        await asyncio.to_thread(wait_for_health, address, 20.0)
        board = start_dashboard_process(address, log_path=tmp_path / "dashboard.log")
        await asyncio.to_thread(wait_http, board.url + "/api/instruments", 30.0, board.process)
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = await context.new_page()
                page.set_default_timeout(15_000)
                await page.goto(board.url + "/")
                await page.wait_for_selector("[data-testid=status]")
                assert await page_status(page, {"LIVE"}, 15.0) == "LIVE"
                url = f"{board.ws_url}/ws/market_data/{INSTRUMENT}?depth=20&interval_ms=0&trades=0"
                async with connect(url, open_timeout=10) as ws:
                    before = await next_where(ws, lambda m: not m["stale"], 10.0)
                    await asyncio.sleep(1.0)  # let the first session run a while
                    before = await next_where(ws, lambda m: not m["stale"], 5.0)

                    feed.kill()  # SIGKILL: no goodbye on the stream
                    killed = time.monotonic()
                    stale = await next_where(ws, lambda m: m["stale"], 5.0)
                    stale_after = time.monotonic() - killed
                    shown = await page_status(page, {"STALE", "RECONNECTING"}, 5.0)
                    page_stale_after = time.monotonic() - killed
                    await asyncio.to_thread(feed.wait, 5.0)

                    feed = start_feed_process(feed_port, "--seed", "6", "--rate", str(RATE))
                    restarted = time.monotonic()
                    await asyncio.to_thread(wait_for_health, address, 20.0)
                    healthy = time.monotonic()
                    live = await next_where(ws, lambda m: not m["stale"], 20.0)
                    recovered = time.monotonic()
                    assert await page_status(page, {"LIVE"}, 10.0) == "LIVE"
                    page_live = time.monotonic()
                    assert ws.close_code is None  # the same socket all along
            finally:
                await context.close()
    finally:
        if board is not None:
            stop_process(board.process)
        stop_process(feed)

    print(
        f"\nrestart: stale on the socket {stale_after:.2f} s after SIGKILL (page {shown} after "
        f"{page_stale_after:.2f} s); feed healthy {healthy - restarted:.2f} s after restart; first live book "
        f"{recovered - restarted:.2f} s after restart ({recovered - healthy:.2f} s after SERVING), page LIVE "
        f"{page_live - restarted:.2f} s after restart; sequence {before['sequence']} before, "
        f"{live['sequence']} after"
    )
    assert stale_after < 2.0, f"the socket said stale only {stale_after:.2f} s after the feed died"
    assert stale["sequence"] == before["sequence"] or stale["sequence"] >= before["sequence"]
    assert recovered - healthy < 10.0, "the dashboard did not come back within 10 s of the feed serving again"
    # The live book after the restart is a true book of the NEW session (the simulation started again, and so
    # did the sequence).
    truth = TruthCursor(SPEC, 6, RATE, depth=20)
    events = truth.seek(levels_to_units(SPEC, live["bids"]), levels_to_units(SPEC, live["asks"]), "the live book")
    assert events < RATE * (recovered - restarted + 2) * 4
    assert live["sequence"] <= events  # a sequence counts messages, each with at least one event
    assert live["sequence"] < before["sequence"] or live["sequence"] < RATE * (recovered - restarted + 2) * 4
    assert "Traceback" not in (board.log_text() if board is not None else "")


async def test_a_frozen_feed_is_noticed_by_the_watchdog_and_the_books_come_back(tmp_path: Path) -> None:
    """SIGSTOP: the connection stays open but nothing arrives (no heartbeat); SIGCONT brings the feed back."""
    feed_port = free_port()
    address = f"127.0.0.1:{feed_port}"
    feed = start_feed_process(feed_port, "--seed", "8", "--rate", str(RATE))
    board = None
    try:
        await asyncio.to_thread(wait_for_health, address, 20.0)
        board = start_dashboard_process(address, log_path=tmp_path / "dashboard.log")
        await asyncio.to_thread(wait_http, board.url + "/api/instruments", 30.0, board.process)
        url = f"{board.ws_url}/ws/market_data/{INSTRUMENT}?depth=20&interval_ms=0&trades=0"
        async with connect(url, open_timeout=10) as ws:
            await next_where(ws, lambda m: not m["stale"], 10.0)
            feed.send_signal(signal.SIGSTOP)
            frozen = time.monotonic()
            try:
                await next_where(ws, lambda m: m["stale"], 6.0)
                stale_after = time.monotonic() - frozen
            finally:
                feed.send_signal(signal.SIGCONT)
            resumed = time.monotonic()
            live = await next_where(ws, lambda m: not m["stale"], 20.0)
            recovered = time.monotonic() - resumed
    finally:
        if board is not None:
            stop_process(board.process)
        stop_process(feed)
    print(f"\nfrozen feed: stale {stale_after:.2f} s after SIGSTOP, live {recovered:.2f} s after SIGCONT")
    # The watchdog allows 2 s without a message (heartbeats come every 0.5 s); the rest is the socket hop.
    assert stale_after < 3.0, f"a silent feed was noticed only after {stale_after:.2f} s"
    TruthCursor(SPEC, 8, RATE, depth=20).seek(
        levels_to_units(SPEC, live["bids"]), levels_to_units(SPEC, live["asks"]), "the live book after SIGCONT"
    )
