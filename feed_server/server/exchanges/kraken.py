"""Kraken spot over WebSocket v2 (``wss://ws.kraken.com/v2``): the ``instrument``, ``book`` and ``trade`` channels.

One connection carries every symbol. ``instruments()`` reads the ``instrument`` channel's ``pairs``: the units
are ``10**-price_precision`` / ``10**-qty_precision`` (the precisions Kraken prints, and its checksum uses), so
that a level off today's increments still fits; ``price_increment`` / ``qty_increment`` are kept as the order
filters. ``run(sink)``
subscribes ``book`` (the adapter's depth, with a snapshot) and ``trade``, keeps each book by Kraken's CRC32
(:mod:`.kraken_book`) and hands the sink only verified books and changes. A fault on one symbol (checksum
mismatch, off-grid value, malformed frame, refused subscription) stales that symbol alone, and its book is
unsubscribed and subscribed again for a fresh snapshot (paced, so a broken symbol never floods Kraken). A lost
or silent connection stales every symbol, and the adapter reconnects with exponential backoff and jitter.
Kraken sends a ``heartbeat`` every second once subscribed; after ``ping_after`` seconds of silence the adapter
sends ``{"method": "ping"}``, after ``silence_timeout`` seconds it drops the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from feed_server.pacing import Backoff, ResyncPacer, Throttle
from feed_server.protocol.instruments import InstrumentSpec, decimals_of
from feed_server.protocol.levels import Side, Trade
from feed_server.server.exchanges.adapter import BookSink, NotOnGrid, SourceUnavailable, to_units, unit_of
from feed_server.server.exchanges.kraken_book import KrakenBook, KrakenBookError, rfc3339_ns, to_decimal

__all__ = ["DEFAULT_URL", "KrakenAdapter"]

logger = logging.getLogger(__name__)

DEFAULT_URL = "wss://ws.kraken.com/v2"
DEPTHS = (10, 25, 100, 500, 1000)
MAX_FRAME = 32 * 1024 * 1024  # the instrument snapshot lists every pair


class _ConnectionLost(Exception):
    """The connection went quiet (no heartbeat) or answered nonsense at start-up."""


@dataclass(frozen=True, slots=True)
class _Pair:
    symbol: str
    spec: InstrumentSpec
    price_decimals: int
    qty_decimals: int


def _pair_from(raw: Mapping[str, Any]) -> _Pair:
    """One element of the instrument channel's ``pairs``; KrakenBookError when it is unusable.

    The units are ``10**-price_precision`` and ``10**-qty_precision`` (the decimals Kraken prints), or finer where
    an increment needs more; the increments are the spec's order filters."""
    symbol, base, quote = raw.get("symbol"), raw.get("base"), raw.get("quote")
    if not all(isinstance(text, str) and text for text in (symbol, base, quote)):
        raise KrakenBookError(f"pair without symbol/base/quote: {raw!r:.120}")
    assert isinstance(symbol, str) and isinstance(base, str) and isinstance(quote, str)
    tick = to_decimal(raw.get("price_increment"), "price_increment")
    lot = to_decimal(raw.get("qty_increment"), "qty_increment")
    if tick <= 0 or lot <= 0:
        raise KrakenBookError(f"{symbol}: price_increment {tick} / qty_increment {lot} must be positive")
    price_decimals = _precision(raw.get("price_precision"), tick)
    qty_decimals = _precision(raw.get("qty_precision"), lot)
    spec = InstrumentSpec(
        f"{base}-{quote}",
        f"{base} / {quote} (Kraken)",
        "crypto",
        unit_of(price_decimals),
        unit_of(qty_decimals),
        order_tick_size=tick.normalize() if tick != tick.to_integral_value() else tick.quantize(Decimal(1)),
        order_lot_size=lot.normalize() if lot != lot.to_integral_value() else lot.quantize(Decimal(1)),
    )
    return _Pair(symbol, spec, price_decimals, qty_decimals)


def _precision(given: object, increment: Decimal) -> int:
    """The decimals of a unit: Kraken's precision, or the increment's own decimals when they are more."""
    decimals = decimals_of(increment)
    if isinstance(given, int) and not isinstance(given, bool) and 0 <= given <= 18:
        return max(given, decimals)
    return decimals


def _decode(text: str | bytes) -> Any:
    """A frame, with every JSON number exact (floats as Decimal, ints as int)."""
    return json.loads(text, parse_float=Decimal)


class KrakenAdapter:
    """Kraken spot's public v2 feed for ``symbols`` (Kraken's names, e.g. ``"BTC/USD"``); see the module docstring."""

    def __init__(
        self,
        symbols: Sequence[str],
        ws_url: str = DEFAULT_URL,
        depth: int = 100,
        *,
        rng: random.Random | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        ping_after: float = 5.0,
        silence_timeout: float = 10.0,
        open_timeout: float = 10.0,
    ) -> None:
        if depth not in DEPTHS:
            raise ValueError(f"kraken book depth must be one of {DEPTHS}, not {depth}")
        if not symbols:
            raise ValueError("kraken needs at least one symbol")
        self.symbols = list(dict.fromkeys(symbols))
        self.ws_url = ws_url
        self.depth = depth
        self._rng = rng or random.Random()
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._ping_after = ping_after
        self._silence_timeout = silence_timeout
        self._open_timeout = open_timeout
        self._pairs: dict[str, _Pair] | None = None
        self._throttle = Throttle(10.0)
        self._req_id = 0

    @property
    def name(self) -> str:
        return "kraken"

    @property
    def max_depth(self) -> int:
        return self.depth

    @property
    def description(self) -> str:
        return f"kraken {','.join(self.symbols)} ({self.ws_url}, depth {self.depth})"

    # -- start-up ---------------------------------------------------------------------------------------------

    async def instruments(self) -> list[InstrumentSpec]:
        """The symbols' specs from the ``instrument`` channel; SourceUnavailable (one line) when it cannot."""
        try:
            async with connect(self.ws_url, max_size=MAX_FRAME, open_timeout=self._open_timeout) as ws:
                pairs = await self._load_pairs(ws)
        except (OSError, TimeoutError, WebSocketException, _ConnectionLost) as exc:
            raise SourceUnavailable(f"kraken: cannot read instruments from {self.ws_url}: {_describe(exc)}") from exc
        return [pairs[symbol].spec for symbol in self.symbols]

    async def _load_pairs(self, ws: ClientConnection) -> dict[str, _Pair]:
        await ws.send(json.dumps({"method": "subscribe", "params": {"channel": "instrument", "snapshot": True}}))
        async with asyncio.timeout(self._silence_timeout * 3):
            while True:
                try:
                    message = _decode(await ws.recv())
                except ValueError as exc:
                    raise _ConnectionLost(f"undecodable frame while reading instruments: {exc}") from None
                if not isinstance(message, dict):
                    continue
                if message.get("method") == "subscribe" and message.get("success") is False:
                    raise _ConnectionLost(f"instrument subscription refused: {message.get('error')}")
                if message.get("channel") == "instrument" and message.get("type") == "snapshot":
                    break
        data = message.get("data")
        raw_pairs = data.get("pairs") if isinstance(data, dict) else None
        if not isinstance(raw_pairs, list):
            raise _ConnectionLost("instrument snapshot without pairs")
        wanted = {raw.get("symbol"): raw for raw in raw_pairs if isinstance(raw, dict)}
        pairs: dict[str, _Pair] = {}
        for symbol in self.symbols:
            if symbol not in wanted:
                raise SourceUnavailable(f"kraken: unknown symbol {symbol!r} (not in the instrument channel's pairs)")
            try:
                pairs[symbol] = _pair_from(wanted[symbol])
            except KrakenBookError as exc:
                raise SourceUnavailable(f"kraken: bad metadata for {symbol}: {exc}") from None
        with contextlib.suppress(WebSocketException):
            await ws.send(json.dumps({"method": "unsubscribe", "params": {"channel": "instrument"}}))
        self._pairs = pairs
        return pairs

    # -- the feed ---------------------------------------------------------------------------------------------

    async def run(self, sink: BookSink) -> None:
        """Until cancelled: connect, subscribe, verify, hand over; on any loss stale everything and reconnect."""
        backoff = Backoff(self._backoff_initial, self._backoff_max, self._rng)
        while True:
            try:
                async with connect(self.ws_url, max_size=MAX_FRAME, open_timeout=self._open_timeout) as ws:
                    session = _Session(self, ws, sink, backoff)
                    try:
                        await session.run()
                    finally:
                        await session.close()
                reason = "closed by the exchange"
            except SourceUnavailable as exc:  # the metadata changed under us: keep trying, loudly
                reason = str(exc)
            except (OSError, TimeoutError, WebSocketException, _ConnectionLost) as exc:
                reason = _describe(exc)
            delay = backoff.delay()
            logger.warning("kraken: connection lost: %s; reconnecting in %.1f s", reason, delay)
            for symbol in self.symbols:
                sink.stale(self._instrument_id(symbol), f"kraken: connection lost: {reason}; reconnecting")
            await asyncio.sleep(delay)

    def _instrument_id(self, symbol: str) -> str:
        if self._pairs is not None and symbol in self._pairs:
            return self._pairs[symbol].spec.instrument_id
        return symbol.replace("/", "-")

    def _next_req_id(self) -> int:
        self._req_id += 1
        return self._req_id

    def _log_throttled(self, key: object, message: str, *args: object) -> None:
        held = self._throttle.allow(key)
        if held is not None:
            logger.warning(message + "%s", *args, held.suffix("such frames"))


class _Session:
    """One connection's subscriptions and books."""

    def __init__(self, adapter: KrakenAdapter, ws: ClientConnection, sink: BookSink, backoff: Backoff) -> None:
        self.adapter = adapter
        self.ws = ws
        self.sink = sink
        self.backoff = backoff
        self.books: dict[str, KrakenBook | None] = {}  # None: waiting for a snapshot
        self.pacers: dict[str, ResyncPacer] = {}
        self.resubscribes: dict[str, asyncio.Task[None]] = {}

    async def close(self) -> None:
        tasks = list(self.resubscribes.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def run(self) -> None:
        adapter = self.adapter
        pairs = adapter._pairs if adapter._pairs is not None else await adapter._load_pairs(self.ws)
        symbols = [symbol for symbol in adapter.symbols if symbol in pairs]
        self.books = dict.fromkeys(symbols)
        await self._send_book("subscribe", symbols)
        await self._send({"method": "subscribe", "params": {"channel": "trade", "symbol": symbols, "snapshot": False}})
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            silent = loop.time() - last
            if silent >= adapter._silence_timeout:
                raise _ConnectionLost(f"no message for {silent:.0f} s")
            try:
                async with asyncio.timeout(min(adapter._ping_after, adapter._silence_timeout - silent)):
                    text = await self.ws.recv()
            except TimeoutError:
                await self._send({"method": "ping", "req_id": adapter._next_req_id()})
                continue
            last = loop.time()
            self._on_frame(text)

    # -- messages ---------------------------------------------------------------------------------------------

    def _on_frame(self, text: str | bytes) -> None:
        try:
            message = _decode(text)
        except ValueError as exc:
            self.adapter._log_throttled("undecodable", "kraken: undecodable frame ignored (%s): %.80r", exc, text)
            return
        if not isinstance(message, dict):
            self.adapter._log_throttled("not-object", "kraken: frame is not an object, ignored: %.80r", text)
            return
        channel = message.get("channel")
        if channel == "book":
            self._on_book(message)
        elif channel == "trade":
            self._on_trade(message)
        elif message.get("method") in ("subscribe", "unsubscribe"):
            self._on_ack(message)
        # heartbeat, status, pong, instrument updates: their arrival is all that matters

    def _on_book(self, message: Mapping[str, Any]) -> None:
        kind = message.get("type")
        data = message.get("data")
        if kind not in ("snapshot", "update") or not isinstance(data, list):
            self.adapter._log_throttled("book-shape", "kraken: malformed book frame ignored: %.120r", message)
            return
        for element in data:
            symbol = element.get("symbol") if isinstance(element, dict) else None
            if symbol not in self.books:
                self.adapter._log_throttled("book-symbol", "kraken: book of no subscribed symbol: %.99r", element)
                continue
            assert isinstance(element, dict) and isinstance(symbol, str)
            book = self.books[symbol]
            pair = self._pair(symbol)
            time_ns = rfc3339_ns(element.get("timestamp")) or time.time_ns()
            try:
                if kind == "snapshot":
                    book = KrakenBook(
                        symbol, pair.spec.tick_size, pair.spec.lot_size, self.adapter.depth, pair.price_decimals,
                        pair.qty_decimals,
                    )
                    bids, asks = book.apply_snapshot(element)
                    self.books[symbol] = book
                    self.backoff.reset()
                    self.sink.book(pair.spec.instrument_id, bids, asks, time_ns)
                elif book is not None:
                    changes = book.apply_update(element)
                    if changes:
                        self.sink.changes(pair.spec.instrument_id, changes, [], time_ns)
            except (KrakenBookError, NotOnGrid) as exc:
                self._fault(symbol, str(exc))

    def _on_trade(self, message: Mapping[str, Any]) -> None:
        data = message.get("data")
        if not isinstance(data, list):
            self.adapter._log_throttled("trade-shape", "kraken: malformed trade frame ignored: %.120r", message)
            return
        by_symbol: dict[str, list[Trade]] = {}
        times: dict[str, int] = {}
        for element in data:
            symbol = element.get("symbol") if isinstance(element, dict) else None
            if not isinstance(symbol, str) or symbol not in self.books or self.books[symbol] is None:
                continue  # not ours, or its book is stale: nothing for it until its next book
            assert isinstance(element, dict)
            pair = self._pair(symbol)
            try:
                side = {"buy": Side.BID, "sell": Side.ASK}.get(str(element.get("side")))  # the taker's side
                if side is None:
                    raise KrakenBookError(f"trade side {element.get('side')!r} on {symbol}")
                price = to_units(str(to_decimal(element.get("price"), "price")), pair.spec.tick_size, "trade price")
                size = to_units(str(to_decimal(element.get("qty"), "qty")), pair.spec.lot_size, "trade qty")
            except (KrakenBookError, NotOnGrid) as exc:
                by_symbol.pop(symbol, None)
                self._fault(symbol, f"{symbol}: {exc}")
                continue
            by_symbol.setdefault(symbol, []).append(Trade(price, size, side))
            times[symbol] = rfc3339_ns(element.get("timestamp")) or time.time_ns()
        for symbol, trades in by_symbol.items():
            if self.books.get(symbol) is not None:
                self.sink.changes(self._pair(symbol).spec.instrument_id, [], trades, times[symbol])

    def _on_ack(self, message: Mapping[str, Any]) -> None:
        if message.get("success") is not False:
            return
        result = message.get("result")
        symbol = message.get("symbol") or (result.get("symbol") if isinstance(result, dict) else None)
        error = message.get("error")
        if message.get("method") == "unsubscribe":
            logger.info("kraken: unsubscribe refused for %s: %s", symbol, error)
            return
        logger.warning("kraken: subscription refused for %s: %s", symbol, error)
        if isinstance(symbol, str) and symbol in self.books:
            self.books[symbol] = None
            self.sink.stale(self._pair(symbol).spec.instrument_id, f"kraken: subscription refused: {error}")

    # -- faults and resubscription ------------------------------------------------------------------------------

    def _fault(self, symbol: str, reason: str) -> None:
        """One symbol's book is not whole: stale it, then unsubscribe and subscribe its book again (paced)."""
        self.adapter._log_throttled(("fault", symbol), "kraken: %s: %s; resubscribing", symbol, reason)
        self.books[symbol] = None
        self.sink.stale(self._pair(symbol).spec.instrument_id, f"kraken: {reason}; resubscribing")
        if symbol in self.resubscribes and not self.resubscribes[symbol].done():
            return
        pacer = self.pacers.setdefault(symbol, ResyncPacer(0.5, 30.0, 60.0, self.adapter._rng))
        self.resubscribes[symbol] = asyncio.create_task(
            self._resubscribe(symbol, pacer.on_fault()), name=f"kraken-resubscribe-{symbol}"
        )

    async def _resubscribe(self, symbol: str, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            await self._send_book("unsubscribe", [symbol])
            await self._send_book("subscribe", [symbol])
        except WebSocketException:
            pass  # the connection is going: the reconnect loop resubscribes everything

    async def _send_book(self, method: str, symbols: list[str]) -> None:
        params = {"channel": "book", "symbol": symbols, "depth": self.adapter.depth}
        if method == "subscribe":
            params["snapshot"] = True
        await self._send({"method": method, "params": params})

    async def _send(self, request: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(request))

    def _pair(self, symbol: str) -> _Pair:
        assert self.adapter._pairs is not None
        return self.adapter._pairs[symbol]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
