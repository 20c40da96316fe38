"""Books and trades to the WebSocket clients of ``/ws/market_data/{instrument_id}``.

The contract (parameters, messages, close codes, limits) is written once, in ``dashboard.api.docs.DESCRIPTION``
(served as the OpenAPI description at ``/docs``); this module implements it:

- A change is one of the levels, the stale flag or the reason (``levels_version`` and the reason, never the
  sequence alone). Books are conflated per client (a version, never a queue); trades go in a per-instrument ring
  of ``ApiLimits.trade_buffer`` messages, sent just before the book of the same flush. params.py parses the query.
- A client of an instrument that a restarted feed no longer lists is closed within the watchdog's period.
- A flush blocked for more than ``ApiLimits.send_timeout`` seconds (checked 4 times a second) drops the client
  and aborts its connection (see transport.py): the server buffers at most one flush plus the transport's
  ~64 KiB per client.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Sequence

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from dashboard.api.book_json import BookJsonCache, encode_error, encode_trade
from dashboard.api.limits import ApiLimits
from dashboard.api.params import MAX_INTERVAL_MS, BadParameter, bool_param, int_param
from dashboard.api.transport import abort, limit_send_buffer
from dashboard.bridge import FeedBridge
from feed_server.defaults import DEFAULT_VIEW_DEPTH
from feed_server.protocol.book import MAX_DEPTH, Trade
from feed_server.protocol.errors import quoted
from feed_server.protocol.instruments import InstrumentSpec

__all__ = ["ApiLimits", "MarketDataHub"]

log = logging.getLogger(__name__)

CLOSE_BAD_REQUEST = 4400
CLOSE_UNKNOWN_INSTRUMENT = 4404
CLOSE_TRY_AGAIN_LATER = 1013


class _TradeLog:
    """One instrument's recent trade messages, encoded once and shared by every client that wants trades.

    ``count`` numbers the trades ever added; a client remembers the count it has sent up to, so a trade costs
    the listener one encode and an append, whatever the number of clients.
    """

    __slots__ = ("count", "recent")

    def __init__(self, keep: int) -> None:
        self.count = 0
        self.recent: deque[str] = deque(maxlen=keep)

    def add(self, texts: list[str]) -> None:
        self.recent.extend(texts)
        self.count += len(texts)

    def since(self, seen: int) -> list[str]:
        """The trades after the first ``seen`` ones (at most the ``keep`` newest)."""
        missing = min(self.count - seen, len(self.recent))
        if missing <= 0:
            return []
        return list(itertools.islice(self.recent, len(self.recent) - missing, None))


class _Client:
    """One WebSocket client's subscription: what it wants and how far it has been sent."""

    __slots__ = ("depth", "flush_started", "gone", "instrument_id", "interval", "sender", "slow", "trades")

    def __init__(self, instrument_id: str, depth: int, interval: float, trades: _TradeLog | None) -> None:
        self.instrument_id = instrument_id
        self.depth = depth
        self.interval = interval
        self.trades = trades  # None: the client did not ask for trades
        self.flush_started = 0.0  # loop time the current flush began (0.0: not sending); the watchdog reads it
        self.sender: asyncio.Task[None] | None = None
        self.slow = False  # the watchdog found a flush blocked for longer than the send timeout
        self.gone = False  # the feed no longer lists the client's instrument: unknown_instrument and 4404


class MarketDataHub:
    """Fans the bridge's books out to WebSocket clients.

    The subscriber's listener does O(1) work per change plus one wake-up per client that is idle and waiting
    for that instrument: a client that has just been sent a book with ``interval_ms > 0`` sleeps out its
    interval without being woken, then takes the latest book (and the trades since its last flush). Each
    client's own task sends the shared JSON from the cache, so a slow client delays nobody.
    """

    def __init__(self, bridge: FeedBridge, limits: ApiLimits | None = None) -> None:
        self.bridge = bridge
        self.limits = limits or ApiLimits()
        self.cache = BookJsonCache()
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}  # per instrument: clients idle until a change
        self._trade_logs: dict[str, _TradeLog] = {}
        self._trade_clients: dict[str, int] = {}  # per instrument: how many clients want trades
        self._connected: set[_Client] = set()
        # Per instrument: the (book, levels_version) the waiting clients were last woken for (a heartbeat, which
        # moves the sequence but changes no level, wakes nobody), and the reason it was last seen not live with.
        self._woken_for: dict[str, tuple[object, int]] = {}
        self._reasons: dict[str, str | None] = {}
        self._watchdog: asyncio.TimerHandle | None = None  # armed while clients are connected
        self._watch_every = max(0.01, min(0.25, self.limits.send_timeout / 4))
        self.connections = 0  # open WebSocket clients (dashboard/metrics.py reads these counters when scraped)
        self.dropped_slow = 0
        self.dropped_gone = 0  # clients ended because the feed no longer lists their instrument
        self.messages_sent = 0  # book and trade messages sent to clients
        bridge.subscriber.add_listener(self._on_book)

    # ----------------------------------------------------------------- listener (in the subscriber task)
    def _on_book(self, instrument_id: str, trades: Sequence[Trade]) -> None:
        if trades and self._trade_clients.get(instrument_id):
            self._trade_logs[instrument_id].add(self._encode_trades(instrument_id, trades))
        if not self._waiting.get(instrument_id):
            return
        ibook = self.bridge.book(instrument_id)
        if ibook is not None:
            seen = (ibook, ibook.levels_version)
            if not trades and self._woken_for.get(instrument_id) == seen:
                return  # a heartbeat: the levels and the stale flag are as they were
            self._woken_for[instrument_id] = seen
        self._wake(instrument_id)

    def _wake(self, instrument_id: str) -> None:
        """Wake the clients of ``instrument_id`` that wait for a change."""
        waiting = self._waiting.get(instrument_id)
        if waiting:
            self._waiting[instrument_id] = []
            for future in waiting:
                if not future.done():
                    future.set_result(None)

    def _encode_trades(self, instrument_id: str, trades: Sequence[Trade]) -> list[str]:
        ibook = self.bridge.book(instrument_id)
        if ibook is None:
            return []
        seq, ts = ibook.book.sequence, ibook.last_event_time_ns
        return [encode_trade(ibook.spec, t, seq, ts).decode() for t in trades]

    async def _next_change(self, instrument_id: str) -> None:
        """Wait until the listener sees the next change of ``instrument_id``."""
        future = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(instrument_id, [])
        waiting.append(future)
        try:
            await future
        finally:
            if not future.done():  # cancelled (the client went away): do not leave it behind
                future.cancel()
                with contextlib.suppress(ValueError):
                    self._waiting.get(instrument_id, []).remove(future)

    # ----------------------------------------------------------------- the watchdog
    def _watch(self) -> None:
        """Every few hundred ms while clients are connected: drop the clients whose current flush has been
        blocked for more than the send timeout; end the clients of an instrument the feed no longer lists
        (unknown_instrument, 4404); wake the clients of an instrument whose reason for not being live changed
        without a book change (the subscriber's problem is not a book event).

        One timer for all clients (rather than a timeout around every flush): a flush only stamps its start.
        """
        self._watchdog = None
        if not self._connected:
            return
        loop = asyncio.get_running_loop()
        overdue = loop.time() - self.limits.send_timeout
        bridge = self.bridge
        for client in self._connected:
            if client.slow or client.gone or client.sender is None:
                continue
            if 0.0 < client.flush_started < overdue:
                client.slow = True
                client.sender.cancel()
            elif client.flush_started == 0.0 and bridge.is_gone(client.instrument_id):
                client.gone = True  # between two flushes: the sender waits, so cancelling it cuts no frame
                client.sender.cancel()
        for instrument_id, waiting in self._waiting.items():
            ibook = bridge.book(instrument_id) if waiting else None
            if ibook is None:
                continue
            reason = bridge.reason(ibook)
            if reason != self._reasons.get(instrument_id, reason):
                self._wake(instrument_id)
            self._reasons[instrument_id] = reason
        self._watchdog = loop.call_later(self._watch_every, self._watch)

    # ----------------------------------------------------------------- shared helpers
    async def known_instruments(self) -> list[InstrumentSpec]:
        """The feed's instruments, waiting (bounded) for the first list; [] if the feed never answered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.instrument_wait
        specs = self.bridge.instruments()
        while not specs and loop.time() < deadline:
            await asyncio.sleep(0.02)
            specs = self.bridge.instruments()
        return specs

    def book_json(self, instrument_id: str, depth: int) -> str | None:
        ibook = self.bridge.book(instrument_id)
        return None if ibook is None else self.cache.get(ibook, depth, self.bridge.reason(ibook))

    # ----------------------------------------------------------------- one WebSocket connection
    async def serve(self, ws: WebSocket, instrument_id: str) -> None:
        limit_send_buffer(ws, self.limits.socket_send_buffer)
        await ws.accept()
        if self.connections >= self.limits.max_connections:
            message = f"at most {self.limits.max_connections} connections"
            await _refuse(ws, "too_many_connections", message, CLOSE_TRY_AGAIN_LATER)
            return
        self.connections += 1
        try:
            await self._serve_accepted(ws, instrument_id)
        finally:
            self.connections -= 1

    async def _serve_accepted(self, ws: WebSocket, instrument_id: str) -> None:
        params = ws.query_params
        try:
            depth = int_param(params, "depth", DEFAULT_VIEW_DEPTH, 1, MAX_DEPTH)
            interval_ms = int_param(params, "interval_ms", 0, 0, MAX_INTERVAL_MS)
            want_trades = bool_param(params, "trades", False)
        except BadParameter as exc:
            await _refuse(ws, "bad_request", str(exc), CLOSE_BAD_REQUEST)
            return
        specs = await self.known_instruments()
        if not specs:
            await _refuse(ws, "feed_unavailable", "the feed has not listed its instruments yet", CLOSE_TRY_AGAIN_LATER)
            return
        if instrument_id not in {s.instrument_id for s in specs}:
            message = f"unknown instrument id {quoted(instrument_id)}"
            await _refuse(ws, "unknown_instrument", message, CLOSE_UNKNOWN_INSTRUMENT)
            return
        trades: _TradeLog | None = None
        if want_trades:
            trades = self._trade_logs.get(instrument_id)
            if trades is None:
                trades = self._trade_logs[instrument_id] = _TradeLog(self.limits.trade_buffer)
            self._trade_clients[instrument_id] = self._trade_clients.get(instrument_id, 0) + 1
        client = _Client(instrument_id, depth, interval_ms / 1000, trades)
        reader = asyncio.create_task(_read_and_ignore(ws), name=f"ws read {instrument_id}")
        sender = client.sender = asyncio.create_task(self._send_loop(ws, client), name=f"ws send {instrument_id}")
        self._connected.add(client)
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(self._watch_every, self._watch)
        try:
            await asyncio.wait({reader, sender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._connected.discard(client)
            if not self._connected and self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
            if want_trades:
                self._trade_clients[instrument_id] -= 1
            blocked = client.flush_started > 0.0 and not sender.done()  # stuck in a send: may never drain
            for task in (reader, sender):
                task.cancel()
            await asyncio.gather(reader, sender, return_exceptions=True)
        if client.slow:
            self.dropped_slow += 1
            log.info("dropped a slow WebSocket client of %s (send blocked > %s s)", instrument_id,
                     self.limits.send_timeout)
            abort(ws)
        elif blocked:
            abort(ws)
        elif client.gone:
            self.dropped_gone += 1
            log.info("closing a WebSocket client of %s: the feed no longer lists it", instrument_id)
            message = f"unknown instrument id {quoted(instrument_id)}: the feed no longer lists it"
            await _refuse(ws, "unknown_instrument", message, CLOSE_UNKNOWN_INSTRUMENT)

    async def _send_loop(self, ws: WebSocket, client: _Client) -> None:
        """Send the full book at once, then at each change (at most once per interval): the trades since the
        last flush, then the latest book. A change is one of the levels, the stale flag or the reason: a
        heartbeat alone (a new sequence, nothing else) sends nothing. Returns when the feed no longer lists the
        instrument (``client.gone``)."""
        loop = asyncio.get_running_loop()
        bridge = self.bridge
        instrument_id, trades, interval = client.instrument_id, client.trades, client.interval
        trades_seen = trades.count if trades is not None else 0
        sent: tuple[object, int, str | None] | None = None  # the (book, levels_version, reason) last sent
        while True:
            ibook = bridge.book(instrument_id)
            if ibook is None and bridge.is_gone(instrument_id):
                client.gone = True
                return
            reason = None
            book_changed = False
            if ibook is not None:
                reason = bridge.reason(ibook)
                shown_now = (ibook, ibook.levels_version, reason)
                book_changed = shown_now != sent
            new_trades = trades.since(trades_seen) if trades is not None else []
            if not book_changed and not new_trades:
                await self._next_change(instrument_id)
                continue
            flushed_at = loop.time()
            if trades is not None:
                trades_seen = trades.count
            data = None
            if book_changed:
                assert ibook is not None
                data = self.cache.get(ibook, client.depth, reason)
                sent = shown_now
            client.flush_started = flushed_at  # the watchdog (_watch) drops a client blocked here too long
            for text in new_trades:
                await ws.send_text(text)
            if data is not None:
                await ws.send_text(data)
            client.flush_started = 0.0
            self.messages_sent += len(new_trades) + (data is not None)
            if interval:
                await asyncio.sleep(flushed_at + interval - loop.time())


async def _read_and_ignore(ws: WebSocket) -> None:
    """Read the client's frames and drop them; return when the client disconnects."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _refuse(ws: WebSocket, code: str, message: str, close_code: int) -> None:
    """Send an error message and close; a client that went away meanwhile is no error."""
    try:
        async with asyncio.timeout(2.0):
            await ws.send_text(encode_error(code, message).decode())
            await ws.close(code=close_code, reason=code)
    except TimeoutError:
        abort(ws)  # a client that does not read
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went away meanwhile
