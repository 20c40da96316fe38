"""Binance spot: the public combined WebSocket streams (diff. depth and aggregate trades) and the REST snapshots.

``instruments()`` reads ``/api/v3/exchangeInfo`` (units from the printed precision, order filters kept beside,
the weight budget from its ``rateLimits``: see :mod:`.binance_rest`). ``run(sink)`` opens a combined-stream
connection (``<sym>@depth@100ms`` and ``<sym>@aggTrade`` of every symbol: :mod:`.binance_stream`), keeps each
symbol's book with
:class:`~feed_server.server.exchanges.binance_book.SymbolBook` (Binance's update-id rules and
``/api/v3/depth?limit=1000`` snapshots, one fetch task per symbol paced by a ResyncPacer, all within the REST
weight budget) and hands the sink what passed.

Connection rules honoured: the server pings every 20 s and ``websockets`` answers each ping with a pong at once;
at most 1024 streams per connection. A connection lives at most 24 h, so the adapter renews it before then
(``renew_after``, default 23 h 30 min), making the new one before breaking the old: it opens and subscribes a
second connection, and each symbol moves over as soon as the new connection's depth events reach back to the
book's update id (update ids are the symbol's own, whatever the connection), with no snapshot and no stale
book; a symbol still quiet after ``switch_within`` seconds moves over anyway (a gap there is detected as any
gap). Then the old connection is closed. An unplanned drop, or a ``serverShutdown`` event, stales every symbol
and reconnects with backoff and jitter, with fresh snapshots.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import httpx

from feed_server.pacing import Backoff, ResyncPacer, Throttle
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.server.exchanges.adapter import BookSink, SourceUnavailable, retry_until_listed
from feed_server.server.exchanges.binance_book import (
    BookOut,
    ChangesOut,
    DepthEvent,
    MalformedEvent,
    Output,
    StaleOut,
    SymbolBook,
    parse_agg_trade,
    parse_depth,
    parse_snapshot,
)
from feed_server.server.exchanges.binance_rest import BinanceRest, spec_from_info
from feed_server.server.exchanges.binance_stream import Connection, Shutdown, close_stream, open_stream
from feed_server.server.exchanges.rest_budget import WeightBudget

__all__ = ["DEFAULT_REST_URL", "DEFAULT_WS_URL", "RENEW_AFTER_S", "BinanceAdapter"]

logger = logging.getLogger(__name__)

DEFAULT_WS_URL = "wss://stream.binance.com:9443"
DEFAULT_REST_URL = "https://api.binance.com"
MAX_STREAMS = 1024  # Binance: a single connection can listen to at most 1024 streams
RENEW_AFTER_S = 23.5 * 3600.0  # Binance ends every connection after 24 h
MAX_HELD_TRADES = 1000  # a renewal's new connection holds at most this many trades per symbol before the move
RENEW_RETRY_S = 60.0  # a renewal that could not connect is tried again after this


class BinanceAdapter:
    """Binance spot order books and trades for some symbols (``BTCUSDT``...), by Binance's documented rules."""

    def __init__(
        self,
        symbols: list[str],
        ws_url: str = DEFAULT_WS_URL,
        rest_url: str = DEFAULT_REST_URL,
        *,
        weight_share: float = 0.5,
        renew_after: float = RENEW_AFTER_S,
        switch_within: float = 10.0,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
        resync_initial: float = 0.5,
        resync_max: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        if not symbols:
            raise ValueError("binance: no symbols")
        if 2 * len(symbols) > MAX_STREAMS:
            raise ValueError(f"binance: {len(symbols)} symbols need more than {MAX_STREAMS} streams on one connection")
        if not 0.0 < weight_share <= 1.0:
            raise ValueError(f"--source-rest-weight-share must be in (0, 1], not {weight_share}")
        if renew_after <= 0:
            raise ValueError(f"--source-renew-after must be positive, not {renew_after}")
        self.symbols = [s.upper() for s in symbols]
        self.ws_url = ws_url.rstrip("/")
        self.rest = BinanceRest(rest_url, WeightBudget(weight_share))
        self.renew_after = renew_after
        self.switch_within = switch_within
        self._reconnect = (reconnect_initial, reconnect_max)
        self._resync_pacing = (resync_initial, resync_max)
        self._rng = rng or random.Random()
        self._specs: dict[str, InstrumentSpec] = {}  # symbol -> spec, filled by instruments()
        self._books: dict[str, SymbolBook] = {}
        self._wanted: dict[str, asyncio.Event] = {}
        self._route: dict[str, Connection | None] = {}  # the connection each book follows
        self._next: Connection | None = None  # a renewal's new connection, while it takes over
        self._all_moved = asyncio.Event()  # set when every book follows the renewal's new connection
        self._throttle = Throttle(10.0)
        self.renewals = 0  # renewals completed

    @property
    def rest_url(self) -> str:
        return self.rest.base_url

    @property
    def name(self) -> str:
        return "binance"

    @property
    def max_depth(self) -> int:
        return 100

    @property
    def description(self) -> str:
        return f"binance {','.join(self.symbols)} ({self.ws_url})"

    # -- start-up -------------------------------------------------------------------------------------------

    async def instruments(self) -> list[InstrumentSpec]:
        """The symbols' specs from ``/api/v3/exchangeInfo``; SourceUnavailable (one line) when it cannot."""
        async with httpx.AsyncClient(timeout=10.0) as http:
            found = await self.rest.exchange_info(http, self.symbols)
        specs: list[InstrumentSpec] = []
        for symbol in self.symbols:
            info = found.get(symbol)
            if info is None:
                raise SourceUnavailable(f"binance: {symbol} is not in {self.rest_url}/api/v3/exchangeInfo")
            if info.get("status") != "TRADING":
                logger.warning("binance %s: status is %s, not TRADING", symbol, info.get("status"))
            specs.append(spec_from_info(symbol, info))
        self._specs = dict(zip(self.symbols, specs, strict=True))
        return specs

    # -- streaming ------------------------------------------------------------------------------------------

    async def run(self, sink: BookSink) -> None:
        """Stream until cancelled; every unplanned drop stales every symbol and reconnects with backoff."""
        backoff = Backoff(*self._reconnect, self._rng)
        if not self._specs:
            await retry_until_listed(self.instruments, backoff)
        self._books = {s: SymbolBook(s, spec.tick_size, spec.lot_size) for s, spec in self._specs.items()}
        self._wanted = {s: asyncio.Event() for s in self._books}
        self._route = dict.fromkeys(self._books)
        async with httpx.AsyncClient(timeout=10.0) as http, asyncio.TaskGroup() as group:
            for symbol in self._books:
                group.create_task(self._snapshots(symbol, http, sink), name=f"binance-snapshot-{symbol}")
            group.create_task(self._connections(sink, backoff), name="binance-connections")

    async def _connections(self, sink: BookSink, backoff: Backoff) -> None:
        while True:
            opened = await self._open(sink, backoff)
            if isinstance(opened, str):
                reason = opened
            else:
                for symbol, book in self._books.items():
                    book.reset()
                    self._route[symbol] = opened
                    self._wanted[symbol].set()
                reason = await self._serve(opened, sink)
            for symbol, book in self._books.items():
                book.reset()
                self._route[symbol] = None
                self._wanted[symbol].clear()
                sink.stale(self._specs[symbol].instrument_id, f"binance: connection lost: {reason}; reconnecting")
            delay = backoff.delay()
            logger.warning("binance: connection lost: %s; reconnecting in %.1f s", reason, delay)
            await asyncio.sleep(delay)

    async def _open(self, sink: BookSink, backoff: Backoff) -> Connection | str:
        def on_frame(connection: Connection, raw: str | bytes) -> None:
            backoff.reset()  # a frame arrived: the connection works
            self._on_frame(connection, raw, sink)

        return await open_stream(self.ws_url, list(self._books), on_frame)

    async def _serve(self, active: Connection, sink: BookSink) -> str:
        """Read ``active``, renewing it before its lifetime ends, until the active connection is lost: why."""
        try:
            while True:
                assert active.reader is not None
                remaining = active.opened + self.renew_after - time.monotonic()
                await asyncio.wait([active.reader], timeout=max(remaining, 0.0))
                if active.reader.done():
                    return active.reader.result()
                renewed = await self._renew(active, sink)
                if renewed is None:
                    active.opened += RENEW_RETRY_S  # keep the old one, try again later
                else:
                    active = renewed
        finally:
            await close_stream(active)

    async def _renew(self, old: Connection, sink: BookSink) -> Connection | None:
        """Make a new connection, move every book over to it, close ``old``: the new one (None: not now)."""
        new = await self._open(sink, Backoff(*self._reconnect, self._rng))
        if isinstance(new, str):
            logger.warning("binance: renewing the connection failed: %s; keeping the old one", new)
            return None
        assert old.reader is not None and new.reader is not None
        self._next = new
        self._all_moved.clear()
        moved = False
        all_moved = asyncio.create_task(self._all_moved.wait(), name="binance-all-moved")
        try:
            waits = [old.reader, new.reader, all_moved]
            await asyncio.wait(waits, timeout=self.switch_within, return_when=asyncio.FIRST_COMPLETED)
            if new.reader.done():  # the new one failed: the books stay with the old one, those moved resync
                logger.warning("binance: the renewed connection ended (%s); keeping the old one", new.reader.result())
                for symbol, route in self._route.items():
                    if route is new:
                        self._route[symbol] = old
                        self._resync(symbol, sink, "binance: the renewed connection ended; fetching a new snapshot")
                return None
            for symbol in self._books:
                if self._route[symbol] is not new:
                    self._move(symbol, new, sink)
            moved = True
        finally:
            all_moved.cancel()
            self._next = None
            await close_stream(old if moved else new)
        self.renewals += 1
        logger.info("binance: connection renewed (renewal %d)", self.renewals)
        return new

    def _move(self, symbol: str, connection: Connection, sink: BookSink) -> None:
        """``symbol``'s book follows ``connection`` from now on, starting with the events it held back."""
        self._route[symbol] = connection
        if all(route is connection for route in self._route.values()):
            self._all_moved.set()
        book = self._books[symbol]
        for event in connection.pending.pop(symbol, []):
            self._deliver(book, book.on_depth(event), sink)
        for trade in connection.pending_trades.pop(symbol, []):  # those the old one passed already are dropped
            self._deliver(book, book.on_trade(trade), sink)

    def _resync(self, symbol: str, sink: BookSink, reason: str) -> None:
        book = self._books[symbol]
        was_live = book.live
        book.reset()
        if was_live:
            sink.stale(self._specs[symbol].instrument_id, reason)
        self._wanted[symbol].set()

    def _on_frame(self, connection: Connection, raw: str | bytes, sink: BookSink) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            self._complain(None, f"a frame that is not JSON: {raw[:80]!r}")
            return  # its symbol is unknown; a lost depth event shows as an update-id gap
        stream = frame.get("stream") if isinstance(frame, dict) else None
        data = frame.get("data") if isinstance(frame, dict) else None
        if "serverShutdown" in (_event_type(frame), _event_type(data)):
            raise Shutdown
        if isinstance(frame, dict) and "id" in frame and "stream" not in frame:
            if frame.get("result") is not None or "error" in frame:
                self._complain(None, f"SUBSCRIBE {frame.get('id')} answered {str(raw)[:120]}")
            return  # the answer to a SUBSCRIBE
        symbol, _, kind = stream.partition("@") if isinstance(stream, str) else ("", "", "")
        book = self._books.get(symbol.upper())
        if book is None:
            self._complain(None, f"a frame of no subscribed stream: {str(raw)[:80]!r}")
            return
        route = self._route[book.symbol]
        if connection is not route and connection is not self._next:
            return  # the old connection, for a book that moved already
        try:
            if not isinstance(data, dict):
                raise MalformedEvent(f"'data' is {data!r}, not an object")
            if kind.startswith("depth"):
                event = parse_depth(data)
                if connection is not route:
                    self._take_over(book, connection, event, sink)
                    return
                outputs = book.on_depth(event)
            elif kind == "aggTrade":
                trade = parse_agg_trade(data)
                if connection is not route:  # the book's own connection passes its trades; held for the move
                    held = connection.pending_trades.setdefault(book.symbol, deque(maxlen=MAX_HELD_TRADES))
                    held.append(trade)
                    return
                outputs = book.on_trade(trade)
            else:
                raise MalformedEvent(f"unexpected stream {stream!r}")
        except MalformedEvent as exc:
            self._complain(book.symbol, f"a malformed {stream} frame: {exc}")
            self._resync(book.symbol, sink, f"binance: malformed {stream} frame; resyncing")
            return
        self._deliver(book, outputs, sink)

    def _take_over(self, book: SymbolBook, connection: Connection, event: DepthEvent, sink: BookSink) -> None:
        """A renewal's new connection: hold its events until they reach back to the book's update id, then move."""
        pending = connection.pending.setdefault(book.symbol, [])
        pending.append(event)
        if not book.live or pending[0].first_id <= book.update_id + 1:
            self._move(book.symbol, connection, sink)

    def _complain(self, symbol: str | None, what: str) -> None:
        held = self._throttle.allow(symbol)
        if held is not None:
            logger.warning("binance %s: %s%s", symbol or "?", what, held.suffix("malformed frames"))

    def _deliver(self, book: SymbolBook, outputs: list[Output], sink: BookSink) -> None:
        instrument_id = self._specs[book.symbol].instrument_id
        for out in outputs:
            if isinstance(out, BookOut):
                sink.book(instrument_id, out.bids, out.asks, out.time_ns)
            elif isinstance(out, ChangesOut):
                sink.changes(instrument_id, out.changes, out.trades, out.time_ns)
            elif isinstance(out, StaleOut):
                held = self._throttle.allow(("stale", book.symbol))
                if held is not None:
                    named = out.reason if book.symbol in out.reason else out.reason.replace(":", f" {book.symbol}:", 1)
                    logger.warning("%s%s", named, held.suffix("such faults"))
                sink.stale(instrument_id, out.reason)
        if book.needs_snapshot and self._route.get(book.symbol) is not None:
            self._wanted[book.symbol].set()

    async def _snapshots(self, symbol: str, http: httpx.AsyncClient, sink: BookSink) -> None:
        """Fetch a snapshot of ``symbol`` whenever its book needs one: paced against storms, within the budget."""
        pacer = ResyncPacer(*self._resync_pacing, clean_after=60.0, rng=self._rng)
        book = self._books[symbol]
        instrument_id = self._specs[symbol].instrument_id
        first = True

        def waiting(reason: str) -> None:
            sink.stale(instrument_id, reason)

        while True:
            await self._wanted[symbol].wait()
            self._wanted[symbol].clear()
            if not book.needs_snapshot:
                continue
            delay = 0.0 if first else pacer.on_fault()
            first = False
            while book.needs_snapshot and self._route[symbol] is not None:
                if delay:
                    await asyncio.sleep(delay)
                try:
                    response = await self.rest.depth(http, symbol, waiting)
                    payload = response.json()
                    snapshot = parse_snapshot(payload if isinstance(payload, Mapping) else {})
                except (httpx.HTTPError, ValueError) as exc:
                    delay = pacer.retry_delay()
                    held = self._throttle.allow(("snapshot", symbol))
                    if held is not None:
                        logger.warning(
                            "binance %s: snapshot from %s failed: %s; retrying in %.1f s%s",
                            symbol, self.rest_url, _describe(exc), delay, held.suffix("failures"),
                        )
                    continue
                if self._route[symbol] is None:
                    break  # the connection went while the snapshot was on its way: its buffer is gone
                self._deliver(book, book.on_snapshot(snapshot, time.time_ns()), sink)
                self._wanted[symbol].clear()  # _deliver asked again if this one could not be used
                delay = pacer.retry_delay() if book.needs_snapshot else 0.0


def _event_type(payload: Any) -> Any:
    return payload.get("e") if isinstance(payload, dict) else None


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return repr(exc)
