"""Helpers for the tests of the JSON WebSocket: bounded receives, the close code, and a book message's checks."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from itertools import pairwise
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from feed_server.protocol.checksum import compute_checksum
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec

__all__ = [
    "BOOK_FIELDS",
    "SPECS",
    "check_book",
    "check_reason",
    "closed_with",
    "recv_book",
    "recv_json",
    "to_units",
]

SPECS = {spec.instrument_id: spec for spec in DEFAULT_INSTRUMENTS}


async def recv_json(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        message = await ws.recv()
    assert isinstance(message, str), "JSON must come as text frames"
    data = json.loads(message)
    assert isinstance(data, dict)
    return data


async def recv_book(ws: ClientConnection, within: float = 5.0, live: bool = True) -> dict[str, Any]:
    """The next book message (skipping trades); with ``live`` also skip stale ones (bounded)."""
    deadline = time.monotonic() + within
    while True:
        data = await recv_json(ws, max(0.01, deadline - time.monotonic()))
        if data["type"] == "book" and (not live or not data["stale"]):
            return data
        assert data["type"] in {"book", "trade"}, data


async def closed_with(ws: ClientConnection, within: float = 5.0) -> int | None:
    async with asyncio.timeout(within):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None


BOOK_FIELDS = {"type", "instrument_id", "sequence", "timestamp_ns", "bids", "asks", "checksum", "stale", "reason"}


def check_reason(message: dict[str, Any]) -> None:
    """``reason`` is null exactly while the book is live, else one line of text."""
    if message["stale"]:
        assert isinstance(message["reason"], str) and message["reason"], message
        assert "\n" not in message["reason"] and len(message["reason"]) < 500, message["reason"]
    else:
        assert message["reason"] is None, message


def to_units(value: float, step: Decimal) -> int:
    """The integer number of ticks (lots) of a JSON number; fails if it is not a multiple of the step."""
    units, remainder = divmod(Decimal(repr(value)), step)
    assert remainder == 0, f"{value} is not a multiple of {step}"
    return int(units)


def check_book(message: dict[str, Any], spec: InstrumentSpec, depth: int) -> None:
    assert set(message) == BOOK_FIELDS
    assert message["instrument_id"] == spec.instrument_id
    check_reason(message)
    bids = [(to_units(p, spec.tick_size), to_units(s, spec.lot_size)) for p, s in message["bids"]]
    asks = [(to_units(p, spec.tick_size), to_units(s, spec.lot_size)) for p, s in message["asks"]]
    assert 0 < len(bids) <= depth and 0 < len(asks) <= depth
    assert all(a[0] > b[0] for a, b in pairwise(bids)), "bids strictly descending"
    assert all(a[0] < b[0] for a, b in pairwise(asks)), "asks strictly ascending"
    assert bids[0][0] < asks[0][0], "best bid below best ask"
    assert all(size > 0 for _, size in bids + asks)
    # Prices are JSON numbers exactly rounded: the float nearest the exact decimal.
    assert message["bids"][0][0] == float(bids[0][0] * spec.tick_size)
    if depth >= 10:
        assert message["checksum"] == compute_checksum(bids[:10], asks[:10])
    assert isinstance(message["timestamp_ns"], int) and message["timestamp_ns"] > 1_600_000_000 * 10**9
