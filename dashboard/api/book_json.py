"""The JSON the dashboard serves for books, trades, instruments and errors, encoded with orjson.

A book's JSON is encoded once per (instrument, depth, version of the book, reason) by ``BookJsonCache`` (the
version moves with every applied message and every stale flip, so with everything else in the JSON) and the
same text is shared by every WebSocket client and REST request that wants it.

Book message (best levels first; prices and sizes are JSON numbers, the floats nearest the exact decimals, made
by feed_server/protocol/units.py)::

    {"type": "book", "instrument_id": "AAPL", "sequence": 1234, "timestamp_ns": 1700000000000000000,
     "bids": [[189.5, 300.0], ...], "asks": [[189.51, 100.0], ...], "checksum": 3735928559, "stale": false,
     "reason": null}

``sequence``, ``timestamp_ns`` and ``checksum`` are the feed's values for the last message applied to the book
(the checksum covers the top 10 levels, see proto/market_data.proto). While a book is stale (a detected gap,
a resynchronisation, a lost connection) ``stale`` is true and the levels are the last verified ones; before
the first snapshot of an instrument ``sequence``/``checksum`` are null and both sides empty. ``reason`` is null
while ``stale`` is false, else one line saying why the book is not live (the feed unreachable or refusing the
dashboard, a sequence gap being resynchronised, waiting for the first snapshot, ...); text from the feed, never
markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import orjson

from feed_server.protocol.book import Level, Trade
from feed_server.protocol.core import BookModel
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.units import FixedPoint, SpecFormat, aggressor_name

if TYPE_CHECKING:
    from feed_server.client.sync import InstrumentBook

__all__ = [
    "NOT_LIVE",
    "BookJsonCache",
    "encode_book",
    "encode_error",
    "encode_trade",
    "instrument_json",
    "instruments_json",
]

_size_of = itemgetter(1)


def _pairs(levels: list[Level], price: FixedPoint, size: FixedPoint) -> list[list[float]]:
    """``[[price, size], ...]`` as JSON numbers (``FixedPoint.number``); one bound check for the side rather than
    two per level."""
    if not levels:
        return []
    # Prices are sorted, so the largest magnitude is at one end; sizes are not.
    if max(abs(levels[0][0]), abs(levels[-1][0])) <= price.fast_limit and max(map(_size_of, levels)) <= size.fast_limit:
        pm, pd, sm, sd = price.scale, price.divisor, size.scale, size.divisor
        return [[p * pm / pd, s * sm / sd] for p, s in levels]
    price_number, size_number = price.number, size.number
    return [[price_number(p), size_number(s)] for p, s in levels]


NOT_LIVE = "not live"  # the reason of a stale book when the caller gives none


@dataclass(slots=True)
class _Entry:
    book: object  # the InstrumentBook object the bytes were made from (a reconnect may replace it)
    version: int
    reason: str | None
    data: str


class BookJsonCache:
    """Encodes each (instrument, depth, book version, reason) once and hands out the same text to everyone."""

    __slots__ = ("_entries", "_formats", "encodes")

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int], _Entry] = {}
        self._formats: dict[str, tuple[InstrumentSpec, SpecFormat]] = {}  # per instrument: its last spec object
        self.encodes = 0  # how many times a book was actually encoded (tests and benchmarks read it)

    def get(self, ibook: InstrumentBook, depth: int, reason: str | None = None) -> str:
        """The book message for ``ibook`` at ``depth`` (a WebSocket text frame), encoded once per version and
        reason (``reason``: why the book is not live, see ``encode_book``)."""
        spec = ibook.spec
        key = (spec.instrument_id, depth)
        entry = self._entries.get(key)
        version = ibook.version
        if entry is not None and entry.book is ibook and entry.version == version and entry.reason == reason:
            return entry.data
        data = encode_book(spec, ibook.book, stale=ibook.stale, timestamp_ns=ibook.last_event_time_ns,
                           depth=depth, fmt=self._format_of(spec), reason=reason).decode()
        self.encodes += 1
        if entry is None:
            self._entries[key] = _Entry(ibook, version, reason, data)
        else:
            entry.book, entry.version, entry.reason, entry.data = ibook, version, reason, data
        return data

    def _format_of(self, spec: InstrumentSpec) -> SpecFormat:
        """``SpecFormat.of(spec)``, found by the spec's identity (cheaper than hashing it) while it stays the same."""
        known = self._formats.get(spec.instrument_id)
        if known is None or known[0] is not spec:
            known = self._formats[spec.instrument_id] = (spec, SpecFormat.of(spec))
        return known[1]


def encode_book(
    spec: InstrumentSpec,
    book: BookModel,
    *,
    stale: bool,
    timestamp_ns: int,
    depth: int,
    fmt: SpecFormat | None = None,
    reason: str | None = None,
) -> bytes:
    """One book message (see the module docstring) for the top ``depth`` levels per side.

    ``"reason"`` is null when the message is not stale, else ``reason`` (``NOT_LIVE`` when that is None)."""
    if fmt is None:
        fmt = SpecFormat.of(spec)
    price, size = fmt.price, fmt.size
    has_book = book.sequence is not None
    stale = stale or not has_book
    return orjson.dumps(
        {
            "type": "book",
            "instrument_id": spec.instrument_id,
            "sequence": book.sequence,
            "timestamp_ns": timestamp_ns,
            "bids": _pairs(book.bids(depth), price, size),
            "asks": _pairs(book.asks(depth), price, size),
            "checksum": book.checksum() if has_book else None,
            "stale": stale,
            "reason": (reason or NOT_LIVE) if stale else None,
        }
    )


def encode_trade(spec: InstrumentSpec, trade: Trade, sequence: int | None, timestamp_ns: int) -> bytes:
    """``{"type": "trade", "instrument_id", "sequence", "timestamp_ns", "price", "size", "aggressor"}``.

    ``aggressor`` is ``"buy"`` when the incoming order bought (lifted an ask), ``"sell"`` when it sold.
    """
    fmt = SpecFormat.of(spec)
    return orjson.dumps(
        {
            "type": "trade",
            "instrument_id": spec.instrument_id,
            "sequence": sequence,
            "timestamp_ns": timestamp_ns,
            "price": fmt.price.number(trade.price),
            "size": fmt.size.number(trade.size),
            "aggressor": aggressor_name(trade.aggressor),
        }
    )


def encode_error(code: str, message: str) -> bytes:
    """``{"type": "error", "code": ..., "message": ...}``."""
    return orjson.dumps({"type": "error", "code": code, "message": message})


def instrument_json(spec: InstrumentSpec) -> dict[str, Any]:
    """One entry of ``GET /api/instruments``: tick and lot size as JSON numbers, plus the exact decimals."""
    return {
        "instrument_id": spec.instrument_id,
        "name": spec.display_name,
        "kind": spec.kind,
        "tick_size": float(spec.tick_size),
        "lot_size": float(spec.lot_size),
        "price_decimals": spec.price_decimals,
        "size_decimals": spec.size_decimals,
        "order_tick_size": float(spec.price_filter),
        "order_lot_size": float(spec.size_filter),
    }


def instruments_json(specs: list[InstrumentSpec]) -> bytes:
    return orjson.dumps([instrument_json(s) for s in specs])
