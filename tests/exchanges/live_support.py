"""Helpers of the end-to-end live-source tests: the feed as a real process playing a fake exchange that runs in
the test's own event loop (so every wait on a process is done in a thread, never blocking the fake), an
in-process gRPC subscriber that logs every stale/live transition, the dashboard's JSON book, and bounded polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Any

import httpx
from websockets.asyncio.client import ClientConnection

from feed_server.client.grpc_transport import FeedSubscriber
from feed_server.client.health import feed_serving
from feed_server.client.keeper import Subscriber
from feed_server.launch import wait_ready
from feed_server.protocol.instruments import InstrumentSpec
from tests.client.support import running
from tests.servers import REPO_ROOT, child_env, free_port
from tests.waiting import eventually, stop_process

DecimalBook = tuple[Mapping[Decimal, Decimal], ...]  # (bids, asks)
UnitBook = tuple[dict[int, int], dict[int, int]]


@dataclass
class FeedProcess:
    """``python -m feed_server ...`` with its stderr in a temporary file (read it with :meth:`log_text`)."""

    process: subprocess.Popen[bytes]
    address: str
    log: IO[bytes]
    final_log: str | None = None  # the whole stderr once the process is stopped

    def log_text(self) -> str:
        if self.final_log is not None:
            return self.final_log
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


def spawn_feed(*args: str) -> FeedProcess:
    port = free_port()
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-m", "feed_server", "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=REPO_ROOT,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    return FeedProcess(process, f"127.0.0.1:{port}", log)


@contextlib.asynccontextmanager
async def live_feed(*args: str, within: float = 20.0) -> AsyncIterator[FeedProcess]:
    """The feed process serving (health SERVING, waited for in a thread); SIGTERM'd on the way out."""
    feed = spawn_feed(*args)
    try:
        try:
            await asyncio.to_thread(
                wait_ready, f"feed at {feed.address}", lambda: feed_serving(feed.address), within, [feed.process]
            )
        except Exception as exc:
            exc.add_note(f"the feed's stderr:\n{feed.log_text()[-4000:]}")
            raise
        yield feed
    finally:
        await asyncio.to_thread(stop_process, feed.process)
        feed.final_log = feed.log_text()
        feed.log.close()


@dataclass
class Watched:
    """A FeedSubscriber at depth 100 and every change of each book's stale flag/reason it notified, in order."""

    subscriber: Subscriber
    changes: list[tuple[float, str, bool, str | None]] = field(default_factory=list)
    stale_books: list[tuple[str, UnitBook]] = field(default_factory=list)  # each book as it was when it went stale

    def on_book(self, instrument_id: str, _trades: object) -> None:
        entry = self.subscriber.books[instrument_id]
        last = next((c for c in reversed(self.changes) if c[1] == instrument_id), None)
        if last is None or (last[2], last[3]) != (entry.stale, entry.stale_reason):
            self.changes.append((time.monotonic(), instrument_id, entry.stale, entry.stale_reason))
            if entry.stale:
                self.stale_books.append((instrument_id, self.units(instrument_id)))

    def transitions(self, instrument_id: str) -> list[str]:
        """``live``/``stale`` per flip of the flag from the first live book on (the reason's changes while stale
        folded in; the wait for the first book is left out: whether it is seen at all depends on timing)."""
        out: list[str] = []
        for _, iid, stale, _ in self.changes:
            kind = "stale" if stale else "live"
            if iid == instrument_id and (out or kind == "live") and (not out or out[-1] != kind):
                out.append(kind)
        return out

    def flipped(self, instrument_id: str, transitions: list[str]) -> bool:
        return self.transitions(instrument_id) == transitions

    def reasons(self, instrument_id: str) -> list[str]:
        return [reason for _, iid, stale, reason in self.changes if iid == instrument_id and stale and reason]

    def live(self, *instrument_ids: str) -> bool:
        books = self.subscriber.books
        return all(iid in books and not books[iid].stale for iid in instrument_ids)

    def stale(self, instrument_id: str) -> bool:
        entry = self.subscriber.books.get(instrument_id)
        return entry is not None and entry.stale

    def units(self, instrument_id: str) -> UnitBook:
        book = self.subscriber.books[instrument_id].book
        return dict(book.bids()), dict(book.asks())

    def spec(self, instrument_id: str) -> InstrumentSpec:
        return self.subscriber.instruments[instrument_id]


@contextlib.asynccontextmanager
async def watching(address: str, *instrument_ids: str) -> AsyncIterator[Watched]:
    subscriber = FeedSubscriber(address, instrument_ids, depth=100)
    watched = Watched(subscriber)
    subscriber.add_listener(watched.on_book)
    async with running(subscriber):
        yield watched


def to_units(book: DecimalBook, spec: InstrumentSpec) -> UnitBook:
    """A book of exchange decimals as ticks and lots (exactly: an off-grid value fails the test)."""
    out: list[dict[int, int]] = []
    for side in book[:2]:
        converted: dict[int, int] = {}
        for price, size in side.items():
            ticks, lots = price / spec.tick_size, size / spec.lot_size
            assert ticks == ticks.to_integral_value() and lots == lots.to_integral_value(), (price, size, spec)
            converted[int(ticks)] = int(lots)
        out.append(converted)
    return out[0], out[1]


def json_levels(book: DecimalBook) -> tuple[list[list[float]], list[list[float]]]:
    """The dashboard's JSON form of a book: ``[[price, size], ...]`` bids best first, asks best first."""
    bids, asks = book
    return (
        [[float(p), float(bids[p])] for p in sorted(bids, reverse=True)],
        [[float(p), float(asks[p])] for p in sorted(asks)],
    )


def shows(book: DecimalBook, *, live: bool = False) -> Callable[[dict[str, Any]], bool]:
    """A condition on the dashboard's book JSON: these levels (and, with ``live``, not stale)."""
    bids, asks = json_levels(book)

    def condition(data: dict[str, Any]) -> bool:
        return data["bids"] == bids and data["asks"] == asks and (not live or data["stale"] is False)

    return condition


async def book_json(http: httpx.AsyncClient, instrument_id: str, depth: int = 100) -> dict[str, Any]:
    response = await http.get(f"/api/book/{instrument_id}", params={"depth": str(depth)})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def until_json(
    http: httpx.AsyncClient, instrument_id: str, condition: Callable[[dict[str, Any]], bool], seconds: float
) -> dict[str, Any]:
    """Poll the dashboard's REST book until ``condition(json)`` (AssertionError with the last JSON after that)."""
    last: list[dict[str, Any]] = [{}]

    async def meets() -> bool:
        last[0] = await book_json(http, instrument_id)
        return condition(last[0])

    await eventually(meets, seconds, lambda: f"{instrument_id}: last JSON {last[0]}", every=0.05)
    return last[0]


async def ws_until(ws: ClientConnection, condition: Callable[[dict[str, Any]], bool], seconds: float) -> dict[str, Any]:
    """Read the dashboard's WebSocket until a book message meets ``condition`` (bounded); that message."""
    seen: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                data: dict[str, Any] = json.loads(await ws.recv())
                seen.append(data)
                if data.get("type", "book") == "book" and condition(data):
                    return data
    except TimeoutError:
        raise AssertionError(f"no such book message within {seconds} s; received {seen[-5:]}") from None


async def run_command(*args: str, within: float = 20.0) -> tuple[int, str, str, float]:
    """``python *args`` from the repo root, to completion (in a thread); code, stdout, stderr, seconds taken."""
    start = time.monotonic()
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        timeout=within,
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode(), time.monotonic() - start
