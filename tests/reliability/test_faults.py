"""Injected faults end to end: faulty feed process -> dashboard process -> WebSocket clients.

The feed drops, duplicates, reorders or corrupts 5% of the dashboard's stream, or adds a level beyond the top 10
(``--fault-rate 0.05``, all kinds, fixed seed). Every book a WebSocket client receives with ``"stale": false``
must equal the server's true book at its sequence, rebuilt here by the same deterministic simulator (same seed
and rate); the faults must really have been injected (the feed's count), detected (stale books on the sockets,
warnings in the dashboard's log) and repaired (live books after stale ones, "resynchronised" in the log).
"""

from __future__ import annotations

import ast
import asyncio
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from feed_server.protocol.book import MAX_DEPTH
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from tests.reliability.conftest import check_against_truth, recv_json, start_system
from tests.waiting import stop_process

SEED = 11
RATE = 150.0  # order events per second per instrument
FAULT_RATE = 0.05
COLLECT_SECONDS = 6.0
SPECS = {spec.instrument_id: spec for spec in DEFAULT_INSTRUMENTS}


async def collect(ws_base: str, instrument_id: str, seconds: float) -> list[dict[str, Any]]:
    """Every book message of one instrument at full depth, every change, for ``seconds``."""
    messages: list[dict[str, Any]] = []
    url = f"{ws_base}/ws/market_data/{instrument_id}?depth={MAX_DEPTH}&interval_ms=0&trades=0"
    async with connect(url, max_size=2**22, open_timeout=10) as ws:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            message = await recv_json(ws, timeout=5.0)
            assert message["type"] == "book", message
            messages.append(message)
    return messages


async def test_every_live_book_on_the_websocket_is_the_true_book_despite_faults(tmp_path: Path) -> None:
    log_path = tmp_path / "dashboard.log"
    system = start_system("--seed", str(SEED), "--rate", str(RATE), "--fault-rate", str(FAULT_RATE), log_path=log_path)
    try:
        ws_base = system.dashboard.ws_url
        started = time.monotonic()
        results = await asyncio.wait_for(
            asyncio.gather(*(collect(ws_base, iid, COLLECT_SECONDS) for iid in SPECS)), COLLECT_SECONDS + 20
        )
        elapsed = time.monotonic() - started
        stop_process(system.dashboard.process)  # the feed logs the faults it injected when the stream closes
    finally:
        stop_process(system.dashboard.process)
        feed_log = "".join(stop_process(system.feed))
    injected_match = re.search(r"faults (\{[^}]*\})", feed_log)
    assert injected_match is not None, "the feed did not report the faults it injected:\n" + feed_log[-3000:]
    injected = ast.literal_eval(injected_match.group(1))

    by_id = dict(zip(SPECS, results, strict=True))
    checked = {iid: check_against_truth(SPECS[iid], SEED, RATE, messages) for iid, messages in by_id.items()}
    stale = {iid: sum(1 for m in messages if m["stale"]) for iid, messages in by_id.items()}
    recovered = {iid: _live_after_stale(messages) for iid, messages in by_id.items()}
    log = system.dashboard.log_text()
    warnings = re.findall(r"WARNING feed_server\.client\.subscriber: (\S+): .*marked stale, resynchronising", log)
    repaired = re.findall(r"INFO feed_server\.client\.subscriber: (\S+) resynchronised at sequence", log)

    print(  # the figures for the README (pytest -s)
        f"\nfaults e2e: {elapsed:.1f} s, injected {injected}, "
        f"at rate {RATE:g}/s x {len(SPECS)}, fault rate {FAULT_RATE}: "
        f"{sum(checked.values())} live books checked against the truth, {sum(stale.values())} stale books sent, "
        f"{len(warnings)} faults detected (warnings), {len(repaired)} resyncs, per instrument "
        f"{dict(Counter(warnings))}"
    )
    assert set(injected) == {"drop", "duplicate", "reorder", "corrupt", "deep"}, injected
    assert all(count >= 20 for count in checked.values()), checked  # a loaded machine sends fewer
    assert len(warnings) >= 5, "faults at 5% were not detected:\n" + log[-3000:]
    assert len(repaired) >= 5, "no resynchronisation in the dashboard's log"
    assert sum(stale.values()) > 0, "no WebSocket client was told a book was stale"
    # Every instrument that went stale came back live without any client action.
    assert all(recovered[iid] for iid in SPECS if stale[iid]), recovered
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


def _live_after_stale(messages: list[dict[str, Any]]) -> bool:
    seen_stale = False
    for message in messages:
        if message["stale"]:
            seen_stale = True
        elif seen_stale:
            return True
    return not seen_stale


async def test_a_wrong_deep_level_is_caught_by_the_digest_and_never_served_as_live(tmp_path: Path) -> None:
    """Only ``deep`` faults: an extra level far beyond the top 10, the checksum intact. The dashboard must refuse
    each such message by its book digest (the log says so), resynchronise, and never send a book holding the
    wrong level as live: every live book, all 100 levels a side, equals the true book."""
    system = start_system(
        "--seed",
        str(SEED),
        "--rate",
        "80",
        "--fault-rate",
        "0.02",
        "--fault-kinds",
        "deep",
        log_path=tmp_path / "dashboard.log",
    )
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(collect(system.dashboard.ws_url, iid, 4.0) for iid in SPECS)), 4.0 + 20
        )
    finally:
        stop_process(system.dashboard.process)
        stop_process(system.feed)
    by_id = dict(zip(SPECS, results, strict=True))
    checked = {iid: check_against_truth(SPECS[iid], SEED, 80.0, messages) for iid, messages in by_id.items()}
    log = system.dashboard.log_text()
    assert "book digest mismatch" in log, log[-3000:]
    assert all(count >= 10 for count in checked.values()), checked
    assert sum(1 for messages in by_id.values() for m in messages if m["stale"]) > 0
    assert all(_live_after_stale(messages) for messages in by_id.values())
