"""Binance spot: the public combined WebSocket streams (diff. depth and aggregate trades) and the REST snapshots.

``instruments()`` reads ``/api/v3/exchangeInfo`` (tick from ``PRICE_FILTER.tickSize``, lot from
``LOT_SIZE.stepSize``). ``run(sink)`` opens ``/stream?streams=<sym>@depth@100ms/<sym>@aggTrade/...``, keeps each
symbol's book with :class:`~feed_server.server.exchanges.binance_book.SymbolBook` (Binance's update-id rules and
``/api/v3/depth?limit=1000`` snapshots, one fetch task per symbol paced by a ResyncPacer) and hands the sink what
passed. Connection rules honoured: the server pings every 20 s and ``websockets`` answers with pongs; a
connection lives at most 24 h, after which Binance closes it and we reconnect as after any drop (every symbol
stale, Backoff with jitter, fresh snapshots), and a ``serverShutdown`` event ends the connection at once the same
way; at most 1024 streams per connection; no messages are sent to the server, so its 5 messages/s limit is never
reached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from feed_server.pacing import Backoff, ResyncPacer, Throttle
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.server.exchanges.adapter import BookSink, SourceUnavailable
from feed_server.server.exchanges.binance_book import (
    BookOut,
    ChangesOut,
    MalformedEvent,
    Output,
    StaleOut,
    SymbolBook,
    parse_agg_trade,
    parse_depth,
    parse_snapshot,
)

__all__ = ["DEFAULT_REST_URL", "DEFAULT_WS_URL", "BinanceAdapter"]

logger = logging.getLogger(__name__)

DEFAULT_WS_URL = "wss://stream.binance.com:9443"
DEFAULT_REST_URL = "https://api.binance.com"
MAX_STREAMS = 1024  # Binance: a single connection can listen to at most 1024 streams
SNAPSHOT_LIMIT = 1000


class _Disconnected(Exception):
    """The WebSocket connection ended (its text is the reason)."""


def _step(filters: list[Any], filter_type: str, key: str, symbol: str) -> Decimal:
    for item in filters:
        if isinstance(item, dict) and item.get("filterType") == filter_type:
            try:
                step = Decimal(str(item[key])).normalize()
            except (KeyError, InvalidOperation) as exc:
                raise SourceUnavailable(f"binance: {symbol}: bad {filter_type}.{key} in exchangeInfo") from exc
            if step <= 0:
                raise SourceUnavailable(f"binance: {symbol}: {filter_type}.{key} is {step}")
            # normalize() turns "10.00" into 1E+1; keep it a plain number
            return step.quantize(Decimal(1)) if step == step.to_integral_value() else step
    raise SourceUnavailable(f"binance: {symbol}: no {filter_type} in exchangeInfo")


class BinanceAdapter:
    """Binance spot order books and trades for some symbols (``BTCUSDT``...), by Binance's documented rules."""

    def __init__(
        self,
        symbols: list[str],
        ws_url: str = DEFAULT_WS_URL,
        rest_url: str = DEFAULT_REST_URL,
        *,
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
        self.symbols = [s.upper() for s in symbols]
        self.ws_url = ws_url.rstrip("/")
        self.rest_url = rest_url.rstrip("/")
        self._reconnect = (reconnect_initial, reconnect_max)
        self._resync = (resync_initial, resync_max)
        self._rng = rng or random.Random()
        self._specs: dict[str, InstrumentSpec] = {}  # symbol -> spec, filled by instruments()
        self._books: dict[str, SymbolBook] = {}
        self._wanted: dict[str, asyncio.Event] = {}
        self._throttle = Throttle(10.0)

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
            listed = json.dumps(self.symbols, separators=(",", ":"))
            data = await self._exchange_info(http, {"symbols": listed}, ",".join(self.symbols))
        found = {s.get("symbol"): s for s in data.get("symbols", []) if isinstance(s, dict)}
        specs: list[InstrumentSpec] = []
        for symbol in self.symbols:
            info = found.get(symbol)
            if info is None:
                raise SourceUnavailable(f"binance: {symbol} is not in {self.rest_url}/api/v3/exchangeInfo")
            filters = info.get("filters") or []
            base, quote = info.get("baseAsset"), info.get("quoteAsset")
            if not isinstance(base, str) or not isinstance(quote, str) or not isinstance(filters, list):
                raise SourceUnavailable(f"binance: {symbol}: exchangeInfo has no baseAsset/quoteAsset/filters")
            if info.get("status") != "TRADING":
                logger.warning("binance %s: status is %s, not TRADING", symbol, info.get("status"))
            spec = InstrumentSpec(
                f"{base}-{quote}",
                f"{base} / {quote} (Binance)",
                "crypto",
                _step(filters, "PRICE_FILTER", "tickSize", symbol),
                _step(filters, "LOT_SIZE", "stepSize", symbol),
            )
            self._specs[symbol] = spec
            specs.append(spec)
        return specs

    async def _exchange_info(self, http: httpx.AsyncClient, params: dict[str, str], what: str) -> dict[str, Any]:
        url = f"{self.rest_url}/api/v3/exchangeInfo"
        try:
            response = await http.get(url, params=params)
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"binance: cannot reach {url}: {exc!r}") from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code == 400 and isinstance(data, dict) and data.get("code") == -1121:
            if "symbols" in params and len(self.symbols) > 1:
                for symbol in self.symbols:  # name the one Binance does not know
                    await self._exchange_info(http, {"symbol": symbol}, symbol)
            raise SourceUnavailable(f"binance: unknown symbol {what} ({data.get('msg')} code -1121 from {url})")
        if response.status_code != 200 or not isinstance(data, dict):
            raise SourceUnavailable(f"binance: {url} answered HTTP {response.status_code} for {what}")
        return data

    # -- streaming ------------------------------------------------------------------------------------------

    async def run(self, sink: BookSink) -> None:
        """Stream until cancelled; every drop stales every symbol and reconnects with backoff."""
        backoff = Backoff(*self._reconnect, self._rng)
        while not self._specs:
            try:
                await self.instruments()
            except SourceUnavailable as exc:
                delay = backoff.delay()
                logger.warning("%s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
        backoff.reset()
        self._books = {s: SymbolBook(s, spec.tick_size, spec.lot_size) for s, spec in self._specs.items()}
        self._wanted = {s: asyncio.Event() for s in self._books}
        streams = "/".join(f"{s.lower()}@depth@100ms/{s.lower()}@aggTrade" for s in self._books)
        url = f"{self.ws_url}/stream?streams={streams}"
        async with httpx.AsyncClient(timeout=10.0) as http:
            while True:
                reason = await self._session(url, http, sink, backoff)
                for symbol, book in self._books.items():
                    book.reset()
                    self._wanted[symbol].clear()
                    sink.stale(self._specs[symbol].instrument_id, f"binance: connection lost: {reason}; reconnecting")
                delay = backoff.delay()
                logger.warning("binance: connection lost: %s; reconnecting in %.1f s", reason, delay)
                await asyncio.sleep(delay)

    async def _session(self, url: str, http: httpx.AsyncClient, sink: BookSink, backoff: Backoff) -> str:
        """One connection: read frames and fetch snapshots until it ends; returns why it ended."""
        try:
            ws = await connect(url, open_timeout=10.0, max_size=2**24)
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            return f"cannot connect to {self.ws_url}: {exc!r}"
        logger.info("binance: connected to %s", url)
        reason = "the connection ended"
        async with ws:
            try:
                async with asyncio.TaskGroup() as group:
                    for symbol in self._books:
                        self._wanted[symbol].set()
                        group.create_task(self._snapshots(symbol, http, sink), name=f"binance-snapshot-{symbol}")
                    group.create_task(self._read(ws, sink, backoff), name="binance-reader")
            except* _Disconnected as group_error:
                reason = str(group_error.exceptions[0])
        return reason

    async def _read(self, ws: ClientConnection, sink: BookSink, backoff: Backoff) -> None:
        try:
            async for raw in ws:
                backoff.reset()  # a frame arrived: the connection works
                self._on_frame(raw, sink)
        except ConnectionClosed as exc:
            raise _Disconnected(str(exc)) from exc
        raise _Disconnected(f"the server closed the connection ({ws.close_code} {ws.close_reason or ''})".strip())

    def _on_frame(self, raw: str | bytes, sink: BookSink) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            self._complain(None, f"a frame that is not JSON: {raw[:80]!r}")
            return  # its symbol is unknown; a lost depth event shows as an update-id gap
        stream = frame.get("stream") if isinstance(frame, dict) else None
        data = frame.get("data") if isinstance(frame, dict) else None
        if "serverShutdown" in (_event_type(frame), _event_type(data)):
            raise _Disconnected("the server announced a shutdown (serverShutdown)")
        symbol, _, kind = stream.partition("@") if isinstance(stream, str) else ("", "", "")
        book = self._books.get(symbol.upper())
        if book is None:
            self._complain(None, f"a frame of no subscribed stream: {str(raw)[:80]!r}")
            return
        try:
            if not isinstance(data, dict):
                raise MalformedEvent(f"'data' is {data!r}, not an object")
            if kind.startswith("depth"):
                outputs = book.on_depth(parse_depth(data))
            elif kind == "aggTrade":
                outputs = book.on_trade(parse_agg_trade(data))
            else:
                raise MalformedEvent(f"unexpected stream {stream!r}")
        except MalformedEvent as exc:
            self._complain(book.symbol, f"a malformed {stream} frame: {exc}")
            was_live = book.live
            book.reset()
            if was_live:
                sink.stale(self._specs[book.symbol].instrument_id, f"binance: malformed {stream} frame; resyncing")
            self._wanted[book.symbol].set()
            return
        self._deliver(book, outputs, sink)

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
                named = out.reason if book.symbol in out.reason else out.reason.replace(":", f" {book.symbol}:", 1)
                logger.warning("%s", named)
                sink.stale(instrument_id, out.reason)
        if book.needs_snapshot:
            self._wanted[book.symbol].set()

    async def _snapshots(self, symbol: str, http: httpx.AsyncClient, sink: BookSink) -> None:
        """Fetch a snapshot of ``symbol`` whenever its book needs one, paced against storms."""
        pacer = ResyncPacer(*self._resync, clean_after=60.0, rng=self._rng)
        book = self._books[symbol]
        url = f"{self.rest_url}/api/v3/depth"
        first = True
        while True:
            await self._wanted[symbol].wait()
            self._wanted[symbol].clear()
            if not book.needs_snapshot:
                continue
            delay = 0.0 if first else pacer.on_fault()
            first = False
            while book.needs_snapshot:
                if delay:
                    await asyncio.sleep(delay)
                try:
                    response = await http.get(url, params={"symbol": symbol, "limit": str(SNAPSHOT_LIMIT)})
                    response.raise_for_status()
                    payload = response.json()
                    snapshot = parse_snapshot(payload if isinstance(payload, Mapping) else {})
                except (httpx.HTTPError, ValueError) as exc:
                    delay = max(pacer.retry_delay(), _retry_after(exc))
                    logger.warning(
                        "binance %s: snapshot from %s failed: %r; retrying in %.1f s", symbol, url, exc, delay
                    )
                    continue
                self._deliver(book, book.on_snapshot(snapshot, time.time_ns()), sink)
                self._wanted[symbol].clear()  # _deliver asked again if this one could not be used
                delay = pacer.retry_delay() if book.needs_snapshot else 0.0


def _event_type(payload: Any) -> Any:
    return payload.get("e") if isinstance(payload, dict) else None


def _retry_after(exc: Exception) -> float:
    """Binance's ``Retry-After`` (seconds) on a 429/418 answer, else 0."""
    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in (418, 429):
        try:
            return float(exc.response.headers.get("Retry-After", "0"))
        except ValueError:
            return 0.0
    return 0.0
