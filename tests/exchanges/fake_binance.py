"""A local stand-in for Binance spot on 127.0.0.1: the combined WebSocket stream and the REST endpoints used.

One ``websockets`` server answers both: ``/stream?streams=...`` becomes a WebSocket that plays the next
session's script, and ``process_request`` answers ``/api/v3/exchangeInfo`` and ``/api/v3/depth`` as plain HTTP
with Binance's documented shapes (400 ``{"code": -1121, "msg": "Invalid symbol."}`` for an unknown symbol).

A script is a list of steps: a frame (str, sent as is, so a malformed one is possible), :class:`Release` (let
the held depth snapshots go), :class:`Drop` (abort the TCP connection), :class:`WaitDepth` (wait for a symbol's
n-th snapshot request), :class:`WaitFor` (wait for a condition), :class:`Pause`. After its script a
connection stays open until the client leaves.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from tests.exchanges.loopback import LoopbackServer
from tests.waiting import eventually

WAIT_FOR_SECONDS = 30.0  # a WaitFor step fails the script (and so the test) after this long


@dataclass(frozen=True)
class Release:
    """Answer the depth requests held so far (and every later one)."""


@dataclass(frozen=True)
class Drop:
    """Abort the connection without a closing handshake."""


@dataclass(frozen=True)
class WaitDepth:
    symbol: str
    count: int


@dataclass(frozen=True)
class WaitFor:
    """Wait until ``condition()`` holds (e.g. the adapter's sink has a live book)."""

    condition: Callable[[], bool]


@dataclass(frozen=True)
class Pause:
    seconds: float


Step = str | Release | Drop | WaitDepth | WaitFor | Pause


def depth_frame(symbol: str, first: int, final: int, bids: list[list[str]], asks: list[list[str]]) -> str:
    """A combined-stream ``depthUpdate`` frame (event time derived from the update id)."""
    data = {
        "e": "depthUpdate",
        "E": 1_700_000_000_000 + final,
        "s": symbol,
        "U": first,
        "u": final,
        "b": bids,
        "a": asks,
    }
    return json.dumps({"stream": f"{symbol.lower()}@depth@100ms", "data": data})


def trade_frame(symbol: str, trade_id: int, price: str, qty: str, buyer_is_maker: bool) -> str:
    """A combined-stream ``aggTrade`` frame."""
    data = {
        "e": "aggTrade",
        "E": 1_700_000_000_000 + trade_id,
        "s": symbol,
        "a": trade_id,
        "p": price,
        "q": qty,
        "f": trade_id * 10,
        "l": trade_id * 10 + 2,
        "T": 1_700_000_000_000 + trade_id,
        "m": buyer_is_maker,
        "M": True,
    }
    return json.dumps({"stream": f"{symbol.lower()}@aggTrade", "data": data})


@dataclass
class FakeBinance(LoopbackServer):
    """``markets``: symbol -> (baseAsset, quoteAsset, tickSize, stepSize). ``snapshots``: per symbol, the depth
    answers in order (the last one repeats). ``sessions``: per connection, its script."""

    markets: dict[str, tuple[str, str, str, str]]
    snapshots: dict[str, list[dict[str, Any]]]
    sessions: list[list[Step]]
    hold_snapshots: bool = False
    depth_requests: dict[str, int] = field(default_factory=dict)  # answered
    depth_asked: dict[str, int] = field(default_factory=dict)  # received (held ones too)
    ws_paths: list[str] = field(default_factory=list)
    scripts_done: int = 0
    _server: Server | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def start(self) -> None:
        if not self.hold_snapshots:
            self._release.set()
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._process_request)

    async def stop(self) -> None:
        self._release.set()  # a depth request still held would keep its handler, and so the server, open
        await self.close_server()

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/stream":
            return None
        if url.path == "/api/v3/exchangeInfo":
            wanted = json.loads(query["symbols"]) if "symbols" in query else [query.get("symbol", "")]
            if any(s not in self.markets for s in wanted):
                return connection.respond(400, json.dumps({"code": -1121, "msg": "Invalid symbol."}))
            return connection.respond(200, json.dumps({"timezone": "UTC", "symbols": [self._info(s) for s in wanted]}))
        if url.path == "/api/v3/depth":
            symbol = query.get("symbol", "")
            if symbol not in self.markets or query.get("limit") != "1000":
                return connection.respond(400, json.dumps({"code": -1121, "msg": "Invalid symbol."}))
            self.depth_asked[symbol] = self.depth_asked.get(symbol, 0) + 1
            await self._release.wait()
            async with self._changed:
                count = self.depth_requests.get(symbol, 0)
                self.depth_requests[symbol] = count + 1
                self._changed.notify_all()
            answers = self.snapshots[symbol]
            return connection.respond(200, json.dumps(answers[min(count, len(answers) - 1)]))
        return connection.respond(404, json.dumps({"code": -1, "msg": "not found"}))

    def _info(self, symbol: str) -> dict[str, Any]:
        base, quote, tick, step = self.markets[symbol]
        return {
            "symbol": symbol,
            "status": "TRADING",
            "baseAsset": base,
            "baseAssetPrecision": 8,
            "quoteAsset": quote,
            "quotePrecision": 8,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000", "tickSize": tick},
                {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000.00000000", "stepSize": step},
            ],
        }

    async def _handle(self, connection: ServerConnection) -> None:
        index = len(self.ws_paths)
        self.ws_paths.append(connection.request.path if connection.request else "")
        steps = self.sessions[index] if index < len(self.sessions) else []
        play = asyncio.create_task(self._play(connection, steps))
        closed = asyncio.create_task(connection.wait_closed())
        try:
            await asyncio.wait([play, closed], return_when=asyncio.FIRST_COMPLETED)
            if play.done() and not play.cancelled() and play.exception() is None:
                await closed
        finally:
            for task in (play, closed):
                task.cancel()
            await asyncio.gather(play, closed, return_exceptions=True)

    def _asked(self, step: WaitDepth) -> bool:
        return self.depth_requests.get(step.symbol, 0) >= step.count

    async def _play(self, connection: ServerConnection, steps: list[Step]) -> None:
        for step in steps:
            if isinstance(step, str):
                await connection.send(step)
            elif isinstance(step, Release):
                self._release.set()
            elif isinstance(step, Drop):
                connection.transport.abort()
                await asyncio.Event().wait()  # the connection's end finishes the session
            elif isinstance(step, WaitDepth):
                async with self._changed:
                    await self._changed.wait_for(partial(self._asked, step))
            elif isinstance(step, WaitFor):
                await eventually(step.condition, WAIT_FOR_SECONDS, "the script's WaitFor condition", every=0.005)
            elif isinstance(step, Pause):
                await asyncio.sleep(step.seconds)  # a scripted pause (the fake's behaviour)
        self.scripts_done += 1
