"""A local stand-in for Coinbase Advanced Trade on 127.0.0.1: the public products endpoint and the market data
WebSocket, on one ``websockets`` server (``process_request`` answers ``/api/...`` as plain HTTP).

REST: ``GET /api/v3/brokerage/market/products?product_ids=...`` answers ``{"products": [...], "num_products": N}``
with the known products only (or HTTP 404 when ``reject_unknown``), and ``.../products/{id}`` one product or 404.

WebSocket: each connection is a :class:`FakeConnection` that records every request. A ``subscribe`` is answered with
a ``subscriptions`` message, then for ``level2`` one ``l2_data`` snapshot per product of the fake's current book,
for ``market_trades`` a ``snapshot`` of past trades (history the adapter must not pass on), and for ``heartbeats``
(while ``heartbeat_interval`` is set) a heartbeat that often. A product the fake does not know is answered with an
``{"type": "error"}`` frame naming it. Every channel message carries the connection's running ``sequence_num``
(one counter across channels, starting at 0); :meth:`FakeCoinbase.skip` makes the next one jump (a gap).
The test drives the market: :meth:`~FakeCoinbase.update` (the levels exactly as given, applied to the fake's book
unless told not to), :meth:`~FakeCoinbase.trade`, :meth:`~FakeCoinbase.heartbeat`, :meth:`~FakeCoinbase.message`
(any events on any channel), :meth:`~FakeCoinbase.send_raw` (any text, unsequenced), :meth:`~FakeCoinbase.drop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.exchanges.loopback import LoopbackServer

PRODUCTS_PATH = "/api/v3/brokerage/market/products"
TIME = "2023-10-06T17:35:55.440295123Z"
TIME_NS = 1696613755_440295123
TRADE_TIME = "2023-10-06T17:35:56.5Z"
TRADE_TIME_NS = 1696613756_500000000

Levels = Sequence[tuple[str, str]]  # (price, new_quantity) as sent


@dataclass
class FakeProduct:
    """One product's metadata as the products endpoint lists it (strings exactly as Coinbase prints them)."""

    product_id: str
    base: str
    quote: str
    price: str
    quote_increment: str
    base_increment: str
    price_increment: str | None = None  # None: the quote_increment
    base_min_size: str | None = None  # None: the base_increment
    base_max_size: str = "3400"
    status: str = "online"

    def metadata(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "price": self.price,
            "price_percentage_change_24h": "-0.28",
            "volume_24h": "11005.02587005",
            "base_increment": self.base_increment,
            "quote_increment": self.quote_increment,
            "quote_min_size": "1",
            "quote_max_size": "150000000",
            "base_min_size": self.base_min_size or self.base_increment,
            "base_max_size": self.base_max_size,
            "base_name": self.base,
            "quote_name": self.quote,
            "status": self.status,
            "trading_disabled": False,
            "product_type": "SPOT",
            "quote_currency_id": self.quote,
            "base_currency_id": self.base,
            "mid_market_price": "",
            "base_display_symbol": self.base,
            "quote_display_symbol": self.quote,
            "price_increment": self.price_increment or self.quote_increment,
            "display_name": self.product_id,
        }


@dataclass
class FakeConnection:
    """One client connection: every request it sent, what it is subscribed to, its next ``sequence_num``."""

    ws: ServerConnection
    requests: list[dict[str, Any]] = field(default_factory=list)
    channels: dict[str, set[str]] = field(default_factory=dict)  # channel -> product ids
    sequence: int = 0
    open: bool = True
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    heartbeats: asyncio.Task[None] | None = None

    def asked(self, kind: str, channel: str, product_id: str) -> int:
        """How many ``kind`` ("subscribe" / "unsubscribe") requests for ``channel`` named ``product_id``."""
        return sum(
            1
            for r in self.requests
            if r.get("type") == kind and r.get("channel") == channel and product_id in r.get("product_ids", [])
        )


class FakeCoinbase(LoopbackServer):
    """Start with :meth:`start` (127.0.0.1, a free port), stop with :meth:`stop` (in a ``finally``)."""

    def __init__(self, products: Sequence[FakeProduct]) -> None:
        self.products = {product.product_id: product for product in products}
        self.books: dict[str, dict[str, dict[Decimal, str]]] = {
            product.product_id: {"bid": {}, "offer": {}} for product in products
        }  # product -> side -> price -> quantity text (the price text is kept in the key's own digits)
        self.connections: list[FakeConnection] = []
        self.rest_requests: list[str] = []
        self.reject_unknown = False  # True: the products list answers 404 when it names an unknown product
        self.heartbeat_interval: float | None = None
        self.withhold_snapshots: dict[str, int] = {}  # product -> level2 subscriptions answered without a snapshot
        self._server: Server | None = None
        self._trade_id = 1000

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        self._server = await serve(self._handle, "127.0.0.1", port, process_request=self._process_request)

    async def stop(self) -> None:
        await self.close_server()

    @property
    def open_connections(self) -> list[FakeConnection]:
        return [conn for conn in self.connections if conn.open]

    def asked(self, kind: str, channel: str, product_id: str) -> int:
        """``kind`` requests for ``channel`` naming ``product_id``, over every connection."""
        return sum(conn.asked(kind, channel, product_id) for conn in self.connections)

    # -- the test drives these ------------------------------------------------------------------------------------

    def seed(self, product_id: str, bids: Levels, offers: Levels) -> None:
        """Replace the fake's book of ``product_id`` (what the next snapshots hold)."""
        self.books[product_id] = {"bid": {}, "offer": {}}
        self._apply(product_id, bids, offers)

    async def update(self, product_id: str, bids: Levels = (), offers: Levels = (), *, apply: bool = True) -> None:
        """An ``l2_data`` update of these levels (exact strings) to every level2 subscriber of the product."""
        if apply:
            self._apply(product_id, bids, offers)
        updates = [_level("bid", p, q) for p, q in bids] + [_level("offer", p, q) for p, q in offers]
        event = {"type": "update", "product_id": product_id, "updates": updates}
        await self.message("l2_data", [event], channel="level2", product_id=product_id)

    async def trade(self, product_id: str, side: str, price: str, size: str) -> None:
        """One ``market_trades`` update; ``side`` is the maker's ("BUY" / "SELL"), as Coinbase prints it."""
        self._trade_id += 1
        trade = {
            "trade_id": str(self._trade_id),
            "product_id": product_id,
            "price": price,
            "size": size,
            "side": side,
            "time": TRADE_TIME,
        }
        await self.message(
            "market_trades", [{"type": "update", "trades": [trade]}], channel="market_trades", product_id=product_id
        )

    async def heartbeat(self) -> None:
        for conn in self.open_connections:
            if "heartbeats" in conn.channels:
                await self._send(conn, "heartbeats", [_heartbeat(conn.sequence)])

    async def message(
        self, name: str, events: list[Any], *, channel: str | None = None, product_id: str | None = None
    ) -> None:
        """A sequenced message ``{"channel": name, ..., "events": events}`` to every open connection (only those
        subscribed to ``channel`` for ``product_id`` when given)."""
        for conn in self.open_connections:
            if channel is None or product_id in conn.channels.get(channel, set()):
                await self._send(conn, name, events)

    async def send_raw(self, text: str) -> None:
        """Any text, as is (no sequence_num is used up), to every open connection."""
        for conn in self.open_connections:
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.send(text)

    def skip(self, count: int = 1) -> None:
        """The next message of every open connection jumps ``count`` sequence numbers (a gap)."""
        for conn in self.open_connections:
            conn.sequence += count

    def drop(self) -> None:
        """Abort every connection without a closing handshake."""
        for conn in self.open_connections:
            conn.ws.transport.abort()

    # -- REST -----------------------------------------------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if not url.path.startswith("/api/"):
            return None  # the WebSocket
        self.rest_requests.append(request.path)
        if url.path == PRODUCTS_PATH:
            wanted = parse_qs(url.query).get("product_ids", [])
            if self.reject_unknown and any(p not in self.products for p in wanted):
                return connection.respond(404, json.dumps({"error": "NOT_FOUND", "message": "product not found"}))
            listed = [self.products[p].metadata() for p in wanted if p in self.products]
            return connection.respond(200, json.dumps({"products": listed, "num_products": len(listed)}))
        product_id = url.path.removeprefix(PRODUCTS_PATH + "/")
        if product_id in self.products:
            return connection.respond(200, json.dumps(self.products[product_id].metadata()))
        return connection.respond(404, json.dumps({"error": "NOT_FOUND", "message": "product not found"}))

    # -- the WebSocket --------------------------------------------------------------------------------------------

    def _apply(self, product_id: str, bids: Levels, offers: Levels) -> None:
        for side, levels in (("bid", bids), ("offer", offers)):
            book = self.books[product_id][side]
            for price, quantity in levels:
                if Decimal(quantity) == 0:
                    book.pop(Decimal(price), None)
                else:
                    book[Decimal(price)] = quantity

    async def _send(self, conn: FakeConnection, channel: str, events: list[Any]) -> None:
        async with conn.lock:  # one sequence_num per message, in the order they go out
            message = {
                "channel": channel,
                "client_id": "",
                "timestamp": TIME,
                "sequence_num": conn.sequence,
                "events": events,
            }
            conn.sequence += 1
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.send(json.dumps(message))

    async def _handle(self, ws: ServerConnection) -> None:
        conn = FakeConnection(ws)
        self.connections.append(conn)
        try:
            async for text in ws:
                request = json.loads(text)
                conn.requests.append(request)
                await self._answer(conn, request)
        except ConnectionClosed:
            pass
        finally:
            conn.open = False
            if conn.heartbeats is not None:
                conn.heartbeats.cancel()
                await asyncio.gather(conn.heartbeats, return_exceptions=True)

    async def _answer(self, conn: FakeConnection, request: dict[str, Any]) -> None:
        kind, channel = request.get("type"), str(request.get("channel"))
        products = [str(p) for p in request.get("product_ids", [])]
        unknown = [p for p in products if p not in self.products]
        if unknown:
            error = {"type": "error", "message": f"Failed to subscribe: unknown product_ids {','.join(unknown)}"}
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.send(json.dumps(error))
        known = [p for p in products if p in self.products]
        subscribed = conn.channels.setdefault(channel, set())
        if kind == "unsubscribe":
            subscribed.difference_update(known)
        else:
            subscribed.update(known)
        listing = {name: sorted(ids) for name, ids in conn.channels.items() if ids}
        await self._send(conn, "subscriptions", [{"subscriptions": listing}])
        if kind != "subscribe":
            return
        if channel == "level2":
            for product_id in known:
                if self.withhold_snapshots.get(product_id, 0) > 0:
                    self.withhold_snapshots[product_id] -= 1
                    continue
                await self._send(conn, "l2_data", [self._snapshot(product_id)])
        elif channel == "market_trades":
            history = [
                {"trade_id": "1", "product_id": p, "price": "1", "size": "1", "side": "BUY", "time": TRADE_TIME}
                for p in known
            ]
            await self._send(conn, "market_trades", [{"type": "snapshot", "trades": history}])
        elif channel == "heartbeats" and self.heartbeat_interval is not None and conn.heartbeats is None:
            conn.heartbeats = asyncio.create_task(self._beat(conn), name="fake-heartbeats")

    def _snapshot(self, product_id: str) -> dict[str, Any]:
        book = self.books[product_id]
        bids = [_level("bid", str(p), book["bid"][p]) for p in sorted(book["bid"], reverse=True)]
        offers = [_level("offer", str(p), book["offer"][p]) for p in sorted(book["offer"])]
        return {"type": "snapshot", "product_id": product_id, "updates": bids + offers}

    async def _beat(self, conn: FakeConnection) -> None:
        """A heartbeat every ``heartbeat_interval`` seconds, until it is set to None (then silence)."""
        while conn.open and self.heartbeat_interval is not None:
            await asyncio.sleep(self.heartbeat_interval)  # the fake's heartbeat period
            await self._send(conn, "heartbeats", [_heartbeat(conn.sequence)])


def _level(side: str, price: str, quantity: str) -> dict[str, str]:
    return {"side": side, "event_time": TIME, "price_level": price, "new_quantity": quantity}


def _heartbeat(counter: int) -> dict[str, Any]:
    return {"current_time": "2023-10-06 17:35:55.440295123 +0000 UTC m=+91717.525857105", "heartbeat_counter": counter}
