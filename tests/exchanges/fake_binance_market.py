"""A running market for the Binance adapter: a local stand-in that behaves like Binance over time, on 127.0.0.1.

Unlike the scripted :class:`~tests.exchanges.fake_binance.FakeBinance`, this one keeps each symbol's true book
and update id (the symbol's own, whatever the connection) and changes it as a market does; every connection
subscribed to a symbol's streams gets its changes, batched on that connection's own boundaries (so two
connections carry the same update ids in different ``U..u`` batches, as Binance's do). It also plays what a
real deployment meets:

- a REST weight budget: every request is weighed (depth ``limit=1000``: 50, exchangeInfo: 20), counted in fixed
  windows of ``window_s`` seconds against ``weight_limit``, reported in ``X-MBX-USED-WEIGHT-<n><s|m>``;
  exceeding it answers 429 with ``Retry-After``; ``reject`` queues forced answers (429 or 418);
- a connection lifetime: each connection is closed ``lifetime_s`` after it opened (Binance: 24 h);
- pings: the server pings every ``ping_s`` and drops a connection whose pong is late (``websockets``' own
  keepalive), recorded in :attr:`ping_drops`;
- ``SUBSCRIBE`` messages adding streams to a connection, as Binance takes them;
- values off the order filters (sizes and prices finer than ``stepSize``/``tickSize``).

The true book is kept as exact Decimals: it is the tests' independent rebuild.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.exchanges.fake_binance import depth_frame, trade_frame
from tests.exchanges.loopback import LoopbackServer

Book = dict[Decimal, Decimal]


@dataclass
class Market:
    """One symbol: its metadata (the filters may be coarser than its values) and its true book."""

    symbol: str
    base: str
    quote: str
    tick: str  # PRICE_FILTER.tickSize as exchangeInfo prints it
    step: str  # LOT_SIZE.stepSize
    mid: Decimal
    price_grain: Decimal  # the granularity the book's prices really have
    size_grain: Decimal  # and its sizes
    bids: Book = field(default_factory=dict)
    asks: Book = field(default_factory=dict)
    update_id: int = 1000
    trade_id: int = 0
    trades: list[tuple[Decimal, Decimal]] = field(default_factory=list)  # (price, size) of every trade, in order
    poison: tuple[str, str] | None = None  # a bid level the snapshots carry while set (e.g. more decimals than 8)

    def info(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "status": "TRADING",
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": self.tick, "maxPrice": "1000000.0", "tickSize": self.tick},
                {"filterType": "LOT_SIZE", "minQty": self.step, "maxQty": "90000000.00000000", "stepSize": self.step},
            ],
        }


def text(value: Decimal) -> str:
    """Binance prints 8 decimals."""
    return f"{value:.8f}"


@dataclass
class _Client:
    connection: ServerConnection
    streams: set[str]
    opened: float
    latency: float = 0.0  # each connection's own delay (frames keep their order): trades reach two apart
    outbox: asyncio.Queue[tuple[float, str]] = field(default_factory=asyncio.Queue)
    pending: dict[str, tuple[int, int, dict[Decimal, Decimal], dict[Decimal, Decimal]]] = field(default_factory=dict)


@dataclass
class FakeBinanceMarket(LoopbackServer):
    markets: dict[str, Market]
    window_s: int = 60
    weight_limit: int = 6000
    lifetime_s: float | None = None
    ping_s: float | None = None
    seed: int = 1
    requests: list[tuple[float, int, str]] = field(default_factory=list)  # (time, weight, path) of REST requests
    reject: list[tuple[int, float]] = field(default_factory=list)  # forced answers to the next requests
    rejected: list[tuple[float, int]] = field(default_factory=list)  # (time, status) of 429/418 answers
    connections: int = 0
    lifetime_closes: int = 0
    ping_drops: int = 0
    _clients: list[_Client] = field(default_factory=list)
    _server: Server | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _window: tuple[int, int] = (0, 0)  # (window number, weight used in it)
    running: bool = False

    # -- life -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._rng = random.Random(self.seed)
        for market in self.markets.values():
            self._seed_book(market)
        kwargs: dict[str, Any] = {"ping_interval": None}
        if self.ping_s is not None:
            kwargs = {"ping_interval": self.ping_s, "ping_timeout": self.ping_s * 2}
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._process_request, **kwargs)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.close_server()

    def trade(self, every_s: float = 0.05, symbols_per_tick: int = 3) -> None:
        """Start changing the books (and trading) every ``every_s``, a few symbols at a time."""
        self.running = True
        self._tasks.append(asyncio.create_task(self._market(every_s, symbols_per_tick)))

    def pause(self) -> None:
        """Stop changing the books (the connections stay open, the pending batches are flushed)."""
        self.running = False

    # -- the market -----------------------------------------------------------------------------------------

    def _seed_book(self, market: Market) -> None:
        for i in range(1, 30):
            market.bids[market.mid - i * market.price_grain * 7] = self._size(market)
            market.asks[market.mid + i * market.price_grain * 7] = self._size(market)

    def _size(self, market: Market) -> Decimal:
        return market.size_grain * self._rng.randint(1, 50_000)

    async def _market(self, every_s: float, count: int) -> None:
        names = list(self.markets)
        while True:
            await asyncio.sleep(every_s)  # the fake market's pace
            if self.running:
                for symbol in self._rng.sample(names, min(count, len(names))):
                    self._change(self.markets[symbol])
            await self._flush()

    def _change(self, market: Market) -> None:
        market.update_id += 1
        first = market.update_id
        bids: dict[Decimal, Decimal] = {}
        asks: dict[Decimal, Decimal] = {}
        for _ in range(self._rng.randint(1, 3)):
            side, changes = (market.bids, bids) if self._rng.random() < 0.5 else (market.asks, asks)
            if side and self._rng.random() < 0.3:
                price = self._rng.choice(list(side))
                size = Decimal(0)
            else:
                offset = market.price_grain * self._rng.randint(1, 200)
                price = market.mid - offset if side is market.bids else market.mid + offset
                size = self._size(market)
            if size:
                side[price] = size
            else:
                side.pop(price, None)
            changes[price] = size
        if self._rng.random() < 0.5:  # sometimes several update ids in one event, as Binance's are
            market.update_id += self._rng.randint(0, 2)
        for client in self._clients:
            if f"{market.symbol.lower()}@depth@100ms" in client.streams:
                held = client.pending.get(market.symbol)
                if held is None:
                    client.pending[market.symbol] = (first, market.update_id, dict(bids), dict(asks))
                else:
                    held[2].update(bids)
                    held[3].update(asks)
                    client.pending[market.symbol] = (held[0], market.update_id, held[2], held[3])
        if self._rng.random() < 0.3:
            market.trade_id += 1
            price, size = market.mid + market.price_grain * self._rng.randint(-5, 5), self._size(market)
            market.trades.append((price, size))
            frame = trade_frame(market.symbol, market.trade_id, text(price), text(size), True)
            for client in self._clients:
                if f"{market.symbol.lower()}@aggtrade" in {s.lower() for s in client.streams}:
                    self._send(client, frame)

    async def _flush(self) -> None:
        for client in list(self._clients):
            # each connection flushes on its own boundaries: sometimes it holds a batch for the next tick
            for symbol, (first, final, bids, asks) in list(client.pending.items()):
                if self.running and self._rng.random() < 0.4:
                    continue
                del client.pending[symbol]
                frame = depth_frame(
                    symbol,
                    first,
                    final,
                    [[text(p), text(q)] for p, q in bids.items()],
                    [[text(p), text(q)] for p, q in asks.items()],
                )
                self._send(client, frame)

    def _send(self, client: _Client, frame: str) -> None:
        client.outbox.put_nowait((time.monotonic() + client.latency, frame))

    async def _sender(self, client: _Client) -> None:
        """One connection's frames in order, each ``latency`` after it was made."""
        while True:
            due, frame = await client.outbox.get()
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)  # the fake's network latency
            try:
                await client.connection.send(frame)
            except ConnectionClosed:
                return

    def quiet(self) -> bool:
        """No batch is held back for any connection."""
        return not any(client.pending or not client.outbox.empty() for client in self._clients)

    # -- REST -----------------------------------------------------------------------------------------------

    def _weigh(self, weight: int) -> tuple[int, dict[str, str]]:
        number = int(time.time() // self.window_s)
        used = (self._window[1] if self._window[0] == number else 0) + weight
        self._window = (number, used)
        letter = "m" if self.window_s % 60 == 0 else "s"
        count = self.window_s // 60 if letter == "m" else self.window_s
        headers = {f"X-MBX-USED-WEIGHT-{count}{letter.upper()}": str(used)}
        if self.reject:
            status, retry = self.reject.pop(0)
            return status, {**headers, "Retry-After": f"{retry:g}"}
        if used > self.weight_limit:
            return 429, {**headers, "Retry-After": str(int((number + 1) * self.window_s - time.time()) + 1)}
        return 200, headers

    def _respond(self, connection: ServerConnection, status: int, body: Any, headers: dict[str, str]) -> Response:
        response = connection.respond(status, json.dumps(body))
        for name, value in headers.items():
            response.headers[name] = value
        response.headers["Content-Type"] = "application/json"
        if status in (418, 429):
            self.rejected.append((time.time(), status))
        return response

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/stream":
            return None
        weight = {"/api/v3/exchangeInfo": 20, "/api/v3/depth": 50}.get(url.path, 1)
        self.requests.append((time.time(), weight, url.path))
        status, headers = self._weigh(weight)
        if status != 200:
            return self._respond(connection, status, {"code": -1003, "msg": "Too many requests"}, headers)
        if url.path == "/api/v3/exchangeInfo":
            wanted = json.loads(query["symbols"]) if "symbols" in query else [query.get("symbol", "")]
            if any(s not in self.markets for s in wanted):
                return self._respond(connection, 400, {"code": -1121, "msg": "Invalid symbol."}, headers)
            limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND" if self.window_s < 60 else "MINUTE",
                       "intervalNum": self.window_s if self.window_s < 60 else self.window_s // 60,
                       "limit": self.weight_limit}]  # fmt: skip
            body = {"timezone": "UTC", "rateLimits": limits, "symbols": [self.markets[s].info() for s in wanted]}
            return self._respond(connection, 200, body, headers)
        if url.path == "/api/v3/depth":
            market = self.markets.get(query.get("symbol", ""))
            if market is None or query.get("limit") != "1000":
                return self._respond(connection, 400, {"code": -1121, "msg": "Invalid symbol."}, headers)
            depth: dict[str, Any] = {
                "lastUpdateId": market.update_id,
                "bids": [[text(p), text(market.bids[p])] for p in sorted(market.bids, reverse=True)[:1000]]
                + ([list(market.poison)] if market.poison else []),
                "asks": [[text(p), text(market.asks[p])] for p in sorted(market.asks)[:1000]],
            }
            return self._respond(connection, 200, depth, headers)
        return self._respond(connection, 404, {"code": -1, "msg": "not found"}, headers)

    # -- WebSocket ------------------------------------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        path = connection.request.path if connection.request else ""
        streams = set(parse_qs(urlsplit(path).query).get("streams", [""])[0].split("/")) - {""}
        client = _Client(connection, streams, time.monotonic(), self._rng.uniform(0.0, 0.05))
        self._clients.append(client)
        sender = asyncio.create_task(self._sender(client))
        self.connections += 1
        try:
            async with asyncio.timeout(self.lifetime_s):
                async for message in connection:
                    request = json.loads(message)
                    if request.get("method") == "SUBSCRIBE":
                        client.streams.update(request.get("params", []))
                        await connection.send(json.dumps({"result": None, "id": request.get("id")}))
        except TimeoutError:
            self.lifetime_closes += 1
            await connection.close(1000, "connection lifetime reached")
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            self._clients.remove(client)
            if connection.close_code == 1011:
                self.ping_drops += 1
