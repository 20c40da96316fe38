"""A real local WebSocket server speaking enough of Kraken's spot WebSocket v2 for the adapter's tests.

It keeps each symbol's whole book (deeper than any subscription), answers ``subscribe`` / ``unsubscribe`` for the
``instrument``, ``book`` and ``trade`` channels (an error answer for an unknown symbol) and ``ping``, and sends book
updates the way Kraken does: only the levels that change inside the subscribed depth, levels coming into scope
included, no ``qty`` 0 for levels pushed out of scope; prices and quantities as bare JSON numbers printed short
(``0.1``, ``45281``). Its checksum is its own, written from Kraken's description with plain string formatting
(prices and quantities held as fixed-decimal text), independent of the adapter's.

Faults on demand: a wrong checksum, a dropped connection, silence (no pong), any raw frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import zlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

TIME = "2023-10-06T17:35:55.440295Z"
TIME_NS = 1696613755_440295000


@dataclass
class FakePair:
    symbol: str
    base: str
    quote: str
    price_decimals: int
    qty_decimals: int
    price_increment: str
    qty_increment: str

    def instrument(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "base": self.base,
            "quote": self.quote,
            "status": "online",
            "qty_precision": self.qty_decimals,
            "qty_increment": _num(self.qty_increment),
            "price_precision": self.price_decimals,
            "cost_precision": 5,
            "marginable": True,
            "has_index": True,
            "cost_min": _num("0.5"),
            "price_increment": _num(self.price_increment),
            "qty_min": _num(self.qty_increment),
        }


@dataclass
class FakeBook:
    """A whole book as fixed-decimal text: price text -> qty text."""

    pair: FakePair
    bids: dict[str, str] = field(default_factory=dict)
    asks: dict[str, str] = field(default_factory=dict)

    def fix_price(self, text: str) -> str:
        return f"{Decimal(text):.{self.pair.price_decimals}f}"

    def fix_qty(self, text: str) -> str:
        return f"{Decimal(text):.{self.pair.qty_decimals}f}"

    def top(self, side: str, depth: int) -> list[tuple[str, str]]:
        book = self.bids if side == "bids" else self.asks
        prices = sorted(book, key=Decimal, reverse=side == "bids")[:depth]
        return [(price, book[price]) for price in prices]

    def checksum(self) -> int:
        """Kraken's recipe, by hand: top 10 asks up then bids down, '.' and leading zeros dropped, CRC32."""
        text = ""
        for side in ("asks", "bids"):
            for price, qty in self.top(side, 10):
                text += price.replace(".", "").lstrip("0") + qty.replace(".", "").lstrip("0")
        return zlib.crc32(text.encode()) & 0xFFFFFFFF


def _num(text: str) -> str:
    """A marker that :func:`_dumps` turns into a bare JSON number, printed short as Kraken prints it."""
    if "." in text:
        text = text.rstrip("0").rstrip(".") or "0"
    return f"@@num@@{text}@@"


_NUM = re.compile(r'"@@num@@([^@]+)@@"')


def _dumps(message: dict[str, Any]) -> str:
    return _NUM.sub(r"\1", json.dumps(message))


def _levels(levels: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"price": _num(price), "qty": _num(qty)} for price, qty in levels]


def _ack(method: str, result: dict[str, Any]) -> str:
    return json.dumps({"method": method, "result": result, "success": True, "time_in": TIME, "time_out": TIME})


class FakeKraken:
    """Start with :meth:`start` (127.0.0.1, a free port), stop with :meth:`stop` (in a ``finally``)."""

    def __init__(self, pairs: list[FakePair]) -> None:
        self.pairs = {pair.symbol: pair for pair in pairs}
        self.books = {pair.symbol: FakeBook(pair) for pair in pairs}
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.muted = False  # True: pings get no pong (a silent connection)
        self._server: Server | None = None
        self._clients: dict[ServerConnection, dict[str, int]] = {}  # connection -> book symbol -> depth
        self._trade_clients: dict[ServerConnection, set[str]] = {}

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/v2"

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1 and ``port`` (0: a free one; the same port again to come back after :meth:`stop`)."""
        self._server = await serve(self._handle, "127.0.0.1", port, compression=None)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()

    def subscribes(self, channel: str, symbol: str) -> int:
        """How many subscribe requests for ``channel`` named ``symbol``."""
        return sum(
            1
            for request in self.requests
            if request.get("method") == "subscribe"
            and request["params"].get("channel") == channel
            and symbol in request["params"].get("symbol", [])
        )

    # -- the test drives these ----------------------------------------------------------------------------------

    def seed(self, symbol: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        book = self.books[symbol]
        book.bids = {book.fix_price(price): book.fix_qty(qty) for price, qty in bids}
        book.asks = {book.fix_price(price): book.fix_qty(qty) for price, qty in asks}

    async def update(
        self,
        symbol: str,
        bids: list[tuple[str, str]] = (),  # type: ignore[assignment]
        asks: list[tuple[str, str]] = (),  # type: ignore[assignment]
        *,
        bad_checksum: bool = False,
    ) -> None:
        """Apply levels (qty 0 removes) to the whole book; send each subscriber what changed in its depth."""
        book = self.books[symbol]
        before = {conn: (book.top("bids", depth), book.top("asks", depth)) for conn, depth in self._subs(symbol)}
        for side, levels in (("bids", bids), ("asks", asks)):
            target = book.bids if side == "bids" else book.asks
            for price, qty in levels:
                if Decimal(qty) == 0:
                    target.pop(book.fix_price(price), None)
                else:
                    target[book.fix_price(price)] = book.fix_qty(qty)
        checksum = book.checksum() ^ (1 if bad_checksum else 0)
        for conn, depth in self._subs(symbol):
            old_bids, old_asks = before[conn]
            element = {"symbol": symbol, "checksum": checksum, "timestamp": TIME}
            for side, old in (("bids", old_bids), ("asks", old_asks)):
                new = book.top(side, depth)
                whole = book.bids if side == "bids" else book.asks
                out = [(price, qty) for price, qty in new if dict(old).get(price) != qty]
                out += [(price, "0") for price, _ in old if price not in dict(new) and price not in whole]
                element[side] = _levels(out)
            await self._send(conn, _dumps({"channel": "book", "type": "update", "data": [element]}))

    async def book_frame(self, symbol: str, bids: list[dict[str, Any]], asks: list[dict[str, Any]]) -> None:
        """A raw book update (levels exactly as given, e.g. off the tick grid or malformed), checksum unchanged."""
        element = {"symbol": symbol, "bids": bids, "asks": asks, "checksum": self.books[symbol].checksum()}
        await self.send_raw(json.dumps({"channel": "book", "type": "update", "data": [element]}))

    async def trade(self, symbol: str, side: str, price: str, qty: str) -> None:
        data = [
            {"symbol": symbol, "side": side, "price": _num(price), "qty": _num(qty), "ord_type": "market",
             "trade_id": 4665906, "timestamp": TIME}
        ]
        for conn, symbols in list(self._trade_clients.items()):
            if symbol in symbols:
                await self._send(conn, _dumps({"channel": "trade", "type": "update", "data": data}))

    async def send_raw(self, text: str) -> None:
        for conn in list(self._clients):
            await self._send(conn, text)

    async def heartbeat(self) -> None:
        await self.send_raw(json.dumps({"channel": "heartbeat"}))

    def drop(self) -> None:
        """Cut every connection without a closing handshake."""
        for conn in list(self._clients):
            conn.transport.abort()

    # -- the server ---------------------------------------------------------------------------------------------

    def _subs(self, symbol: str) -> list[tuple[ServerConnection, int]]:
        return [(conn, subs[symbol]) for conn, subs in self._clients.items() if symbol in subs]

    async def _send(self, conn: ServerConnection, text: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await conn.send(text)

    async def _handle(self, conn: ServerConnection) -> None:
        self.connections += 1
        self._clients[conn] = {}
        self._trade_clients[conn] = set()
        await self._send(conn, json.dumps({"channel": "status", "type": "update", "data": [
            {"version": "2.0.0", "system": "online", "api_version": "v2", "connection_id": 1}]}))
        try:
            async for text in conn:
                request = json.loads(text)
                self.requests.append(request)
                await self._answer(conn, request)
        except ConnectionClosed:
            pass
        finally:
            self._clients.pop(conn, None)
            self._trade_clients.pop(conn, None)

    async def _answer(self, conn: ServerConnection, request: dict[str, Any]) -> None:
        method = str(request.get("method"))
        if method == "ping":
            if not self.muted:
                await self._send(conn, json.dumps({"method": "pong", "req_id": request.get("req_id"),
                                                   "time_in": TIME, "time_out": TIME}))
            return
        params = request.get("params", {})
        channel = params.get("channel")
        if channel == "instrument":
            await self._send(conn, _ack(method, {"channel": "instrument", "snapshot": True}))
            if method == "subscribe":
                pairs = [pair.instrument() for pair in self.pairs.values()]
                await self._send(conn, _dumps({"channel": "instrument", "type": "snapshot",
                                               "data": {"assets": [], "pairs": pairs}}))
            return
        for symbol in params.get("symbol", []):
            if symbol not in self.pairs:
                await self._send(conn, json.dumps({"error": f"Currency pair not supported {symbol}", "method": method,
                                                   "success": False, "symbol": symbol, "time_in": TIME,
                                                   "time_out": TIME}))
                continue
            if channel == "trade":
                await self._send(conn, _ack(method, {"channel": "trade", "symbol": symbol, "snapshot": False}))
                (self._trade_clients[conn].add if method == "subscribe" else self._trade_clients[conn].discard)(symbol)
            elif channel == "book":
                depth = int(params.get("depth", 10))
                await self._send(conn, _ack(method, {"channel": "book", "symbol": symbol, "depth": depth,
                                                     "snapshot": True}))
                if method == "unsubscribe":
                    self._clients[conn].pop(symbol, None)
                    continue
                self._clients[conn][symbol] = depth
                book = self.books[symbol]
                element = {"symbol": symbol, "bids": _levels(book.top("bids", depth)),
                           "asks": _levels(book.top("asks", depth)), "checksum": book.checksum(), "timestamp": TIME}
                await self._send(conn, _dumps({"channel": "book", "type": "snapshot", "data": [element]}))
