"""Network faults between the feed and the dashboard, end to end, through a TCP proxy that fails on demand.

feed process <- FaultProxy <- dashboard process <- WebSocket clients (all instruments, depth 100, every change).
One after another the proxy cuts every connection, stalls for 4 s, resets with TCP RST, and corrupts bytes in
the feed-to-dashboard direction for 2 s. After each fault ends, every book must be live again within 5 s with no
user action and no process restarted, and every book the clients received as live must equal the feed's true
book at its sequence (rebuilt by the same deterministic simulator).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from feed_server.protocol.book import MAX_DEPTH
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from tests.reliability.conftest import (
    check_against_truth,
    recv_json,
    start_dashboard_process,
    wait_http,
)
from tests.reliability.fault_proxy import FaultProxy
from tests.servers import free_port, start_feed_process, wait_for_health
from tests.waiting import eventually, stop_process

SEED = 21
RATE = 60.0
RECOVERY_S = 5.0
SPECS = {spec.instrument_id: spec for spec in DEFAULT_INSTRUMENTS}


async def _collect(ws_base: str, instrument_id: str, stop: asyncio.Event, into: list[dict[str, Any]]) -> None:
    url = f"{ws_base}/ws/market_data/{instrument_id}?depth={MAX_DEPTH}&interval_ms=0&trades=0"
    async with connect(url, max_size=2**22, open_timeout=10) as ws:
        while not stop.is_set():
            try:
                message = await recv_json(ws, timeout=0.5)
            except TimeoutError:
                continue
            assert message["type"] == "book", message
            into.append(message)


async def _all_live(client: httpx.AsyncClient, base: str) -> bool:
    for iid in SPECS:
        response = await client.get(f"{base}/api/book/{iid}?depth=1")
        if response.status_code != 200 or response.json()["stale"]:
            return False
    return True


async def test_the_dashboard_recovers_from_every_network_fault_by_itself(tmp_path: Path) -> None:
    feed_port = free_port()
    feed = start_feed_process(feed_port, "--seed", str(SEED), "--rate", str(RATE))
    proxy = FaultProxy(feed_port, seed=SEED)
    board = None
    stop = asyncio.Event()
    collected: dict[str, list[dict[str, Any]]] = {iid: [] for iid in SPECS}
    collectors: list[asyncio.Task[None]] = []
    recovery: dict[str, float] = {}
    try:
        await asyncio.to_thread(wait_for_health, f"127.0.0.1:{feed_port}", 20.0)
        proxy_port = await proxy.start()
        board = start_dashboard_process(f"127.0.0.1:{proxy_port}", log_path=tmp_path / "dashboard.log")
        await asyncio.to_thread(wait_http, board.url + "/api/instruments", 30.0, board.process)
        collectors = [asyncio.create_task(_collect(board.ws_url, iid, stop, collected[iid])) for iid in SPECS]
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
            await eventually(
                lambda: _all_live(client, board.url), 20.0, "every book live after the fault", every=0.05
            )
            faults: list[tuple[str, Callable[[], Awaitable[None]]]] = [
                ("cut", _now(proxy.cut)),
                ("stall 4 s", lambda: proxy.stall(4.0)),
                ("reset", _now(proxy.reset)),
                ("corrupt 2 s", lambda: proxy.corrupt(2.0)),
            ]
            for name, fault in faults:
                await eventually(
                    lambda: _all_live(client, board.url), 20.0, "every book live after the fault", every=0.05
                )
                await asyncio.sleep(1.0)  # some live traffic between faults
                await fault()
                recovery[name] = await eventually(
                    lambda: _all_live(client, board.url), RECOVERY_S, "every book live after the fault", every=0.05
                )
                assert board.process.poll() is None and feed.poll() is None, f"a process died during {name}"
            await asyncio.sleep(1.0)  # some live traffic after the last fault, for the collectors to check
        stop.set()
        async with asyncio.timeout(10):
            await asyncio.gather(*collectors)
    finally:
        stop.set()
        for task in collectors:
            task.cancel()
        await asyncio.gather(*collectors, return_exceptions=True)
        await proxy.close()
        if board is not None:
            stop_process(board.process)
        stop_process(feed)
    checked = {iid: check_against_truth(SPECS[iid], SEED, RATE, messages) for iid, messages in collected.items()}
    stale = {iid: sum(1 for m in messages if m["stale"]) for iid, messages in collected.items()}
    print(  # the figures for the README (pytest -s)
        "\nnetwork faults: time to every book live after each fault ends: "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in recovery.items())
        + f"; {proxy.connections} connections through the proxy, {proxy.flipped} bytes flipped; "
        f"{sum(checked.values())} live books checked against the truth, {sum(stale.values())} stale books sent"
    )
    assert all(count >= 20 for count in checked.values()), checked
    assert sum(stale.values()) > 0, "no fault ever made a book stale: the proxy did nothing"
    assert proxy.connections >= 4, "the dashboard did not reconnect after the faults"
    assert proxy.flipped > 0


def _now(action: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        action()

    return run
