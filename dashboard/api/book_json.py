"""The JSON the dashboard serves for books, trades, instruments and errors, encoded with orjson.

A book's JSON is encoded once per (instrument, depth, version of the book) by ``BookJsonCache`` and the
same text is shared by every WebSocket client and REST request that wants it.

Book message (best levels first; prices and sizes are JSON numbers exactly rounded to tick and lot)::

    {"type": "book", "instrument_id": "AAPL", "sequence": 1234, "timestamp_ns": 1700000000000000000,
     "bids": [[189.5, 300.0], ...], "asks": [[189.51, 100.0], ...], "checksum": 3735928559, "stale": false}

``sequence``, ``timestamp_ns`` and ``checksum`` are the feed's values for the last message applied to the book
(the checksum covers the top 10 levels, see proto/market_data.proto). While a book is stale (a detected gap,
a resynchronisation, a lost connection) ``stale`` is true and the levels are the last verified ones; before
the first snapshot of an instrument ``sequence``/``checksum`` are null and both sides empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import orjson

from feed_server.protocol.book import Level, OrderBook, Side, Trade
from feed_server.protocol.instruments import InstrumentSpec

if TYPE_CHECKING:
    from feed_server.client.subscriber import InstrumentBook

__all__ = [
    "BookJsonCache",
    "Scale",
    "encode_book",
    "encode_error",
    "encode_trade",
    "instrument_json",
    "instruments_json",
]

_EXACT_INT = 2**53
_size_of = itemgetter(1)


class Scale:
    """Turns integer ticks (or lots) into the JSON number nearest the exact decimal, fast.

    A step ``m * 10**-k`` gives ``ticks * m / 10**k``: both integers are exact in a float below 2**53, and IEEE
    division rounds correctly, so the result is the float nearest the exact decimal, as ``float(Decimal)``.
    """

    __slots__ = ("_div", "_mul", "_step")

    def __init__(self, step: Decimal) -> None:
        sign, digits, exponent = step.normalize().as_tuple()
        assert isinstance(exponent, int)
        mantissa = int("".join(map(str, digits))) * (-1 if sign else 1)
        self._step = step
        self._mul: int
        self._div: int
        if exponent >= 0:
            self._mul, self._div = mantissa * 10**exponent, 1
        else:
            self._mul, self._div = mantissa, 10**-exponent

    def __call__(self, units: int) -> float:
        scaled = units * self._mul
        if -_EXACT_INT < scaled < _EXACT_INT and self._div < 10**22:
            return scaled / self._div
        return float(units * self._step)

    def exact_up_to(self, units: int) -> bool:
        """Whether ``units * mul / div`` is exact (as ``__call__``) for every ``-units <= u <= units``."""
        return units * abs(self._mul) < _EXACT_INT and self._div < 10**22


def _pairs(levels: list[Level], price: Scale, size: Scale) -> list[list[float]]:
    """``[[price, size], ...]`` as JSON numbers; one bound check for the side rather than two per level."""
    if not levels:
        return []
    # Prices are sorted, so the largest magnitude is at one end; sizes are not.
    if price.exact_up_to(max(abs(levels[0][0]), abs(levels[-1][0]))) and size.exact_up_to(
        max(map(_size_of, levels))
    ):
        pm, pd, sm, sd = price._mul, price._div, size._mul, size._div
        return [[p * pm / pd, s * sm / sd] for p, s in levels]
    return [[price(p), size(s)] for p, s in levels]


@dataclass(slots=True)
class _Entry:
    book: object  # the InstrumentBook object the bytes were made from (a reconnect may replace it)
    version: int
    data: str


@dataclass(frozen=True, slots=True)
class _Scales:
    price: Scale
    size: Scale


class BookJsonCache:
    """Encodes each (instrument, depth, book version) once and hands out the same text to everyone."""

    __slots__ = ("_entries", "_scales", "encodes")

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int], _Entry] = {}
        self._scales: dict[str, tuple[InstrumentSpec, _Scales]] = {}
        self.encodes = 0  # how many times a book was actually encoded (tests and benchmarks read it)

    def get(self, ibook: InstrumentBook, depth: int) -> str:
        """The book message for ``ibook`` at ``depth`` (a WebSocket text frame), encoded once per version."""
        spec = ibook.spec
        key = (spec.instrument_id, depth)
        entry = self._entries.get(key)
        if entry is not None and entry.book is ibook and entry.version == ibook.version:
            return entry.data
        data = encode_book(spec, ibook.book, stale=ibook.stale, timestamp_ns=ibook.last_event_time_ns,
                           depth=depth, scales=self._scales_for(spec)).decode()
        self.encodes += 1
        if entry is None:
            self._entries[key] = _Entry(ibook, ibook.version, data)
        else:
            entry.book, entry.version, entry.data = ibook, ibook.version, data
        return data

    def forget(self, instrument_id: str) -> None:
        """Drop an instrument's entries (its spec changed, e.g. after a feed restart)."""
        for key in [k for k in self._entries if k[0] == instrument_id]:
            del self._entries[key]
        self._scales.pop(instrument_id, None)

    def _scales_for(self, spec: InstrumentSpec) -> _Scales:
        known = self._scales.get(spec.instrument_id)
        if known is not None and known[0] == spec:
            return known[1]
        scales = _Scales(Scale(spec.tick_size), Scale(spec.lot_size))
        self._scales[spec.instrument_id] = (spec, scales)
        return scales


def encode_book(
    spec: InstrumentSpec,
    book: OrderBook,
    *,
    stale: bool,
    timestamp_ns: int,
    depth: int,
    scales: _Scales | None = None,
) -> bytes:
    """One book message (see the module docstring) for the top ``depth`` levels per side."""
    if scales is None:
        scales = _Scales(Scale(spec.tick_size), Scale(spec.lot_size))
    price, size = scales.price, scales.size
    has_book = book.sequence is not None
    return orjson.dumps(
        {
            "type": "book",
            "instrument_id": spec.instrument_id,
            "sequence": book.sequence,
            "timestamp_ns": timestamp_ns,
            "bids": _pairs(book.bids(depth), price, size),
            "asks": _pairs(book.asks(depth), price, size),
            "checksum": book.checksum() if has_book else None,
            "stale": stale or not has_book,
        }
    )


_AGGRESSOR = {Side.BID: "buy", Side.ASK: "sell"}


def encode_trade(spec: InstrumentSpec, trade: Trade, sequence: int | None, timestamp_ns: int) -> bytes:
    """``{"type": "trade", "instrument_id", "sequence", "timestamp_ns", "price", "size", "aggressor"}``.

    ``aggressor`` is ``"buy"`` when the incoming order bought (lifted an ask), ``"sell"`` when it sold.
    """
    return orjson.dumps(
        {
            "type": "trade",
            "instrument_id": spec.instrument_id,
            "sequence": sequence,
            "timestamp_ns": timestamp_ns,
            "price": spec.price_float(trade.price),
            "size": spec.size_float(trade.size),
            "aggressor": _AGGRESSOR.get(trade.aggressor, "unknown"),
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
    }


def instruments_json(specs: list[InstrumentSpec]) -> bytes:
    return orjson.dumps([instrument_json(s) for s in specs])
