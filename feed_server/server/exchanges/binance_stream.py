"""One Binance combined-stream WebSocket connection: opened, subscribed to every stream, read by one task.

The first ``URL_STREAMS`` streams are named in the URL (``/stream?streams=a/b/...``); the rest are added with
``SUBSCRIBE`` messages of ``SUBSCRIBE_STREAMS`` streams, ``SUBSCRIBE_GAP_S`` apart (Binance takes at most 5
incoming messages a second), so that a long symbol list never makes a URL too long for the exchange. Each frame
goes to the adapter's ``on_frame(connection, raw)``; it may raise :class:`Shutdown` (Binance's ``serverShutdown``
event), which ends the connection. ``websockets`` answers Binance's pings (every 20 s) with pongs at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, WebSocketException

from feed_server.server.exchanges.binance_book import DepthEvent, TradeEvent

__all__ = ["Connection", "Shutdown", "close_stream", "open_stream", "stream_names"]

logger = logging.getLogger(__name__)

URL_STREAMS = 200  # streams named in the URL; the rest by SUBSCRIBE messages
SUBSCRIBE_STREAMS = 200  # streams per SUBSCRIBE message
SUBSCRIBE_GAP_S = 0.25  # between SUBSCRIBE messages (Binance: at most 5 incoming messages a second)


class Shutdown(Exception):
    """The server announced its shutdown: the connection is ending."""


@dataclass(eq=False)
class Connection:
    """One WebSocket connection and the task reading it (its result: why the connection ended)."""

    ws: ClientConnection
    opened: float  # monotonic
    reader: asyncio.Task[str] | None = None
    pending: dict[str, list[DepthEvent]] = field(default_factory=dict)  # while taking over: its early events
    pending_trades: dict[str, deque[TradeEvent]] = field(default_factory=dict)  # and its early trades


FrameHandler = Callable[[Connection, str | bytes], None]


def stream_names(symbols: Sequence[str]) -> list[str]:
    """Each symbol's diff. depth and aggregate trade streams."""
    return [f"{s.lower()}@{kind}" for s in symbols for kind in ("depth@100ms", "aggTrade")]


async def open_stream(ws_url: str, symbols: Sequence[str], on_frame: FrameHandler) -> Connection | str:
    """A connection subscribed to every stream of ``symbols``, its reader started; or why it could not be made."""
    streams = stream_names(symbols)
    url = f"{ws_url}/stream?streams={'/'.join(streams[:URL_STREAMS])}"
    try:
        ws = await connect(url, open_timeout=10.0, max_size=2**24)
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        return f"cannot connect to {ws_url}: {exc!r}"
    connection = Connection(ws, time.monotonic())
    connection.reader = asyncio.create_task(_read(connection, on_frame), name="binance-reader")
    try:
        for number, start in enumerate(range(URL_STREAMS, len(streams), SUBSCRIBE_STREAMS), start=1):
            await asyncio.sleep(SUBSCRIBE_GAP_S)
            params = streams[start : start + SUBSCRIBE_STREAMS]
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": params, "id": number}))
    except WebSocketException as exc:
        await close_stream(connection)
        return f"subscribing failed: {exc!r}"
    logger.info("binance: connected to %s (%d streams)", ws_url, len(streams))
    return connection


async def close_stream(connection: Connection) -> None:
    """Stop reading ``connection`` and close it (whatever state it is in)."""
    if connection.reader is not None and not connection.reader.done():
        connection.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connection.reader
    with contextlib.suppress(WebSocketException, OSError):
        await connection.ws.close()


async def _read(connection: Connection, on_frame: FrameHandler) -> str:
    """Read frames until the connection ends; returns why it ended."""
    ws = connection.ws
    try:
        async for raw in ws:
            on_frame(connection, raw)
    except ConnectionClosed as exc:
        return str(exc)
    except Shutdown:
        return "the server announced a shutdown (serverShutdown)"
    except Exception as exc:  # a bug in the frame handling: logged, and the connection made again (never give up)
        logger.exception("binance: unexpected error while reading the stream")
        return f"an unexpected error ({exc!r})"
    return f"the server closed the connection ({ws.close_code} {ws.close_reason or ''})".strip()
