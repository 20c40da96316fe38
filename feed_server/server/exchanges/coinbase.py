"""Coinbase Advanced Trade: the public products endpoint and the market data WebSocket (no authentication).

``instruments()`` reads ``GET {rest_url}/api/v3/brokerage/market/products?product_ids=...`` (units from the
precision of the product's strings, order filters from its increments: :func:`.coinbase_book.spec_from_product`).
``run(sink)`` opens one WebSocket at ``ws_url`` and sends one ``subscribe`` per channel: ``level2`` (a snapshot of
each whole book, then updates), ``market_trades`` and ``heartbeats`` (one message a second, so a quiet market never
looks like a dead connection; Coinbase closes a connection that subscribes to nothing within 5 s).

Checks. ``sequence_num`` is per connection across every channel and goes up by exactly 1: a gap, a repeat or a
step back stales every product (``"coinbase: sequence_num jumped from 41 to 43; resubscribing"``) and level2 is
unsubscribed and subscribed again for fresh snapshots. A value that does not fit the units, a malformed level2
event or trade, stales that product alone and resubscribes it; an ``error`` frame stales the products it names (all
of them when it names none) and resubscribes them. Every resubscription is paced per product by a ResyncPacer and
every such log line is throttled, so a broken stream is never a tight loop. Until its snapshot a product's updates
and trades are ignored; a market_trades ``snapshot`` (history) is never passed on. A frame that is not JSON, not an
object, or of an unknown channel is logged (throttled) and ignored.

After ``silence_timeout`` seconds without any message the connection is dropped. A lost connection stales every
product (``"coinbase: connection lost: ...; reconnecting"``) and the adapter reconnects with exponential backoff
and jitter, subscribing everything again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Iterable, Sequence
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from feed_server.pacing import Backoff, ResyncPacer, Throttle
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.levels import Trade
from feed_server.server.exchanges.adapter import BookSink, SourceUnavailable, retry_until_listed
from feed_server.server.exchanges.coinbase_book import (
    CoinbaseError,
    Frame,
    ProductBook,
    SequenceCheck,
    parse_frame,
    parse_l2_event,
    parse_trade,
    spec_from_product,
)

__all__ = ["DEFAULT_REST_URL", "DEFAULT_WS_URL", "PRODUCTS_PATH", "CoinbaseAdapter"]

logger = logging.getLogger(__name__)

DEFAULT_WS_URL = "wss://advanced-trade-ws.coinbase.com"
DEFAULT_REST_URL = "https://api.coinbase.com"
PRODUCTS_PATH = "/api/v3/brokerage/market/products"
CHANNELS = ("level2", "market_trades", "heartbeats")
MAX_FRAME = 64 * 1024 * 1024  # a level2 snapshot is the whole book
SNAPSHOT_WITHIN = 10.0  # seconds from a level2 subscription to its snapshot before it is tried again


class _ConnectionLost(Exception):
    """The connection went quiet (its text is the reason)."""


class CoinbaseAdapter:
    """Coinbase Advanced Trade books and trades for ``products`` (``"BTC-USD"``...); see the module docstring."""

    def __init__(
        self,
        products: Sequence[str],
        ws_url: str = DEFAULT_WS_URL,
        rest_url: str = DEFAULT_REST_URL,
        *,
        rng: random.Random | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        resync_initial: float = 0.5,
        resync_max: float = 30.0,
        silence_timeout: float = 10.0,
        snapshot_within: float = SNAPSHOT_WITHIN,
        open_timeout: float = 10.0,
        http_timeout: float = 10.0,
    ) -> None:
        self.products = list(dict.fromkeys(product.strip().upper() for product in products))
        if not self.products or not all(self.products):
            raise ValueError("coinbase needs at least one product")
        self.ws_url = ws_url
        self.rest_url = rest_url.rstrip("/")
        self._rng = rng or random.Random()
        self._backoff = (backoff_initial, backoff_max)
        self._resync = (resync_initial, resync_max)
        self._silence_timeout = silence_timeout
        self._snapshot_within = snapshot_within
        self._open_timeout = open_timeout
        self._http_timeout = http_timeout
        self._specs: dict[str, InstrumentSpec] = {}  # product id -> spec, filled by instruments()
        self._throttle = Throttle(10.0)

    @property
    def name(self) -> str:
        return "coinbase"

    @property
    def max_depth(self) -> int:
        return 100

    @property
    def description(self) -> str:
        return f"coinbase {','.join(self.products)} ({self.ws_url})"

    # -- start-up -------------------------------------------------------------------------------------------

    async def instruments(self) -> list[InstrumentSpec]:
        """The products' specs from the public products endpoint; SourceUnavailable (one line) when it cannot."""
        url = f"{self.rest_url}{PRODUCTS_PATH}"
        async with httpx.AsyncClient(timeout=self._http_timeout) as http:
            data = await self._get(http, url, {"product_ids": self.products})
            if isinstance(data, int):  # a 4xx: find the product it is about
                for product in self.products:
                    status = await self._get(http, f"{url}/{product}", {})
                    if isinstance(status, int):
                        raise SourceUnavailable(
                            f"coinbase: unknown product {product} (HTTP {status} from {url}/{product})"
                        )
                raise SourceUnavailable(f"coinbase: {url} answered HTTP {data} for {','.join(self.products)}")
        listed = data.get("products")
        found = (
            {raw.get("product_id"): raw for raw in listed if isinstance(raw, dict)} if isinstance(listed, list) else {}
        )
        specs: dict[str, InstrumentSpec] = {}
        for product in self.products:
            raw = found.get(product)
            if raw is None:
                raise SourceUnavailable(f"coinbase: unknown product {product} (not in the answer of {url})")
            try:
                specs[product] = spec_from_product(raw)
            except CoinbaseError as exc:
                raise SourceUnavailable(f"coinbase: bad metadata for {product}: {exc}") from None
            if raw.get("status") != "online" or raw.get("trading_disabled") is True:
                logger.warning(
                    "coinbase %s: status %s, trading_disabled %s",
                    product,
                    raw.get("status"),
                    raw.get("trading_disabled"),
                )
        self._specs = specs
        return [specs[product] for product in self.products]

    async def _get(self, http: httpx.AsyncClient, url: str, params: dict[str, list[str]]) -> dict[str, Any] | int:
        """The JSON object at ``url``, or the HTTP status of a 4xx answer (SourceUnavailable otherwise)."""
        try:
            response = await http.get(url, params=params)
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"coinbase: cannot reach {url}: {_describe(exc)}") from exc
        if 400 <= response.status_code < 500 and response.status_code != 429:
            return response.status_code
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code != 200 or not isinstance(data, dict):
            raise SourceUnavailable(f"coinbase: {url} answered HTTP {response.status_code} without a JSON object")
        return data

    # -- the feed -------------------------------------------------------------------------------------------

    async def run(self, sink: BookSink) -> None:
        """Until cancelled: connect, subscribe, check, hand over; on any loss stale everything and reconnect."""
        backoff = Backoff(*self._backoff, self._rng)
        if not self._specs:
            await retry_until_listed(self.instruments, backoff)
        pacers = {product: ResyncPacer(*self._resync, 60.0, self._rng) for product in self.products}
        while True:
            try:
                async with connect(self.ws_url, max_size=MAX_FRAME, open_timeout=self._open_timeout) as ws:
                    logger.info("coinbase: connected to %s", self.ws_url)
                    session = _Session(self, ws, sink, backoff, pacers)
                    try:
                        await session.run()
                    finally:
                        await session.close()
                reason = "closed by the exchange"
            except (OSError, TimeoutError, WebSocketException, _ConnectionLost) as exc:
                reason = _describe(exc)
            delay = backoff.delay()
            logger.warning("coinbase: connection lost: %s; reconnecting in %.1f s", reason, delay)
            for product in self.products:
                sink.stale(product, f"coinbase: connection lost: {reason}; reconnecting")
            await asyncio.sleep(delay)

    def _log_throttled(self, key: object, message: str, *args: object) -> None:
        held = self._throttle.allow(key)
        if held is not None:
            logger.warning(message + "%s", *args, held.suffix("such faults"))


class _Session:
    """One connection: its sequence check, the products' books and their paced resubscriptions."""

    def __init__(
        self,
        adapter: CoinbaseAdapter,
        ws: ClientConnection,
        sink: BookSink,
        backoff: Backoff,
        pacers: dict[str, ResyncPacer],
    ) -> None:
        self.adapter = adapter
        self.ws = ws
        self.sink = sink
        self.backoff = backoff
        self.pacers = pacers
        self.sequence = SequenceCheck()
        specs = adapter._specs
        self.books = {p: ProductBook(p, specs[p].tick_size, specs[p].lot_size) for p in adapter.products}
        self.reasons: dict[str, str] = {}  # product -> the stale reason last given (none while live)
        self.due: dict[str, float] = {}  # product -> loop time its level2 resubscription is due
        self.awaiting: dict[str, float] = {}  # product -> loop time by which its subscription's snapshot is due
        self.wake = asyncio.Event()
        self.resubscriber: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self.resubscriber is not None:
            self.resubscriber.cancel()
            await asyncio.gather(self.resubscriber, return_exceptions=True)

    async def run(self) -> None:
        deadline = asyncio.get_running_loop().time() + self.adapter._snapshot_within
        self.awaiting = dict.fromkeys(self.adapter.products, deadline)
        for channel in CHANNELS:
            await self._send("subscribe", channel, self.adapter.products)
        self.resubscriber = asyncio.create_task(self._resubscribe(), name="coinbase-resubscribe")
        silence = self.adapter._silence_timeout
        while True:
            try:
                async with asyncio.timeout(silence):
                    text = await self.ws.recv()
            except TimeoutError:
                raise _ConnectionLost(f"no message for {silence:g} s") from None
            self._on_frame(text)

    # -- messages -------------------------------------------------------------------------------------------

    def _on_frame(self, text: str | bytes) -> None:
        adapter = self.adapter
        try:
            frame = parse_frame(text)
        except CoinbaseError as exc:
            kind = str(exc).partition(" (")[0].partition(":")[0]  # "a frame that is not JSON" / "... an object"
            adapter._log_throttled(("frame", kind), "coinbase: %s, ignored: %.80r", exc, text)
            return
        if frame.error is not None:
            named = [product for product in adapter.products if product in frame.error]
            adapter._log_throttled("error", "coinbase: error frame: %s", frame.error)
            self._fault(named or adapter.products, f"error from the exchange: {frame.error}", log=False)
            return
        if frame.channel is None:
            adapter._log_throttled("no-channel", "coinbase: a frame without channel ignored: %.80r", text)
            return
        fault = (
            "a message without sequence_num" if frame.sequence_num is None else self.sequence.check(frame.sequence_num)
        )
        if fault is not None:
            adapter._log_throttled("sequence", "coinbase: %s; resubscribing level2", fault)
            self._fault(adapter.products, fault, log=False)
        if frame.channel == "l2_data":
            self._on_l2(frame)
        elif frame.channel == "market_trades":
            self._on_trades(frame)
        elif frame.channel not in ("heartbeats", "subscriptions"):  # their arrival is all that matters
            adapter._log_throttled(("channel", frame.channel), "coinbase: channel %r ignored", frame.channel)

    def _on_l2(self, frame: Frame) -> None:
        time_ns = frame.time_ns or time.time_ns()
        for raw in frame.events:
            try:
                event = parse_l2_event(raw)
            except CoinbaseError as exc:
                self._product_fault(exc)
                continue
            book = self.books.get(event.product_id)
            if book is None:
                self.adapter._log_throttled(
                    "l2-product", "coinbase: l2_data of no subscribed product %r", event.product_id
                )
                continue
            try:
                if event.kind == "snapshot":
                    if event.product_id in self.due:
                        continue  # faulted: only the snapshot of the resubscription counts
                    bids, asks = book.snapshot(event.levels)
                    self.awaiting.pop(event.product_id, None)
                    self.reasons.pop(event.product_id, None)
                    self.backoff.reset()  # a whole book arrived: the connection works
                    self.sink.book(event.product_id, bids, asks, time_ns)
                else:
                    changes = book.update(event.levels)
                    if changes:
                        self.sink.changes(event.product_id, changes, [], time_ns)
            except CoinbaseError as exc:
                self._product_fault(exc)

    def _on_trades(self, frame: Frame) -> None:
        trades: dict[str, list[Trade]] = {}
        times: dict[str, int] = {}
        for event in frame.events:
            kind = event.get("type") if isinstance(event, dict) else None
            raw_trades = event.get("trades") if isinstance(event, dict) else None
            if kind not in ("snapshot", "update") or not isinstance(raw_trades, list):
                self.adapter._log_throttled("trades", "coinbase: malformed market_trades event: %.100r", event)
                continue
            if kind == "snapshot":
                continue  # the recent history, not trades of the live book
            for raw in raw_trades:
                try:
                    parsed = parse_trade(raw)
                    book = self.books.get(parsed.product_id)
                    if book is None or not book.live:
                        continue  # not ours, or its book is not live: nothing for it until its snapshot
                    trades.setdefault(parsed.product_id, []).append(book.trade(parsed))
                    times[parsed.product_id] = parsed.time_ns or frame.time_ns or time.time_ns()
                except CoinbaseError as exc:
                    if exc.product_id is not None:
                        trades.pop(exc.product_id, None)
                    self._product_fault(exc)
        for product, batch in trades.items():
            if self.books[product].live:
                self.sink.changes(product, [], batch, times[product])

    # -- faults and resubscription --------------------------------------------------------------------------

    def _product_fault(self, exc: CoinbaseError) -> None:
        product = exc.product_id
        if product in self.books:
            assert product is not None
            self._fault([product], str(exc))
        else:
            self.adapter._log_throttled("malformed", "coinbase: %s; ignored", exc)

    def _fault(self, products: Iterable[str], reason: str, *, log: bool = True) -> None:
        """The products' books are not whole: stale them, then resubscribe their level2 (paced per product)."""
        loop = asyncio.get_running_loop()
        stale_reason = f"coinbase: {reason}; resubscribing"
        for product in products:
            book = self.books[product]
            if log:
                self.adapter._log_throttled(("fault", product), "coinbase: %s; resubscribing", reason)
            if book.live or self.reasons.get(product) != stale_reason:
                self.sink.stale(product, stale_reason)
                self.reasons[product] = stale_reason
            book.reset()
            if product not in self.due:
                self.due[product] = loop.time() + self.pacers[product].on_fault()
        self.wake.set()

    async def _resubscribe(self) -> None:
        """Unsubscribe and subscribe level2 again for the products whose time has come, together; a subscription
        whose snapshot has not come within ``snapshot_within`` is a fault too (never stale forever)."""
        loop = asyncio.get_running_loop()
        within = self.adapter._snapshot_within
        while True:
            self.wake.clear()
            now = loop.time()
            late = [product for product, deadline in self.awaiting.items() if deadline <= now]
            for product in late:
                del self.awaiting[product]
            if late:
                self._fault(late, f"no level2 snapshot within {within:g} s of subscribing")
            deadlines = [*self.due.values(), *self.awaiting.values()]
            if not deadlines:
                await self.wake.wait()
                continue
            ready = [product for product, due in self.due.items() if due <= now]
            if not ready:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(deadlines) - now):
                        await self.wake.wait()
                continue
            for product in ready:  # before sending: the snapshot that answers may be read before send returns
                del self.due[product]
                self.awaiting[product] = now + within
            try:
                await self._send("unsubscribe", "level2", ready)
                await self._send("subscribe", "level2", ready)
            except ConnectionClosed:
                return  # the reading loop sees the end and reconnects, subscribing everything

    async def _send(self, kind: str, channel: str, products: Sequence[str]) -> None:
        await self.ws.send(json.dumps({"type": kind, "product_ids": list(products), "channel": channel}))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
