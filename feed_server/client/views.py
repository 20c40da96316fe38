"""The public API's value types: an instrument, a book as of one sequence, a trade, one update (all immutable).

Prices and sizes are ``decimal.Decimal``, exact: the feed's integer ticks and lots times the instrument's tick
and lot size (feed_server.protocol.instruments), never a float. A :class:`Book` is taken when its message was
verified and converts its levels only when they are read, so an update nobody looks at costs little.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from feed_server.client.sync import InstrumentBook
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.levels import Level
from feed_server.protocol.levels import Trade as TickTrade
from feed_server.protocol.units import aggressor_name

__all__ = ["Book", "Instrument", "Trade", "Update"]

PriceSize = tuple[Decimal, Decimal]
"""``(price, size)`` of one level."""


@dataclass(frozen=True, slots=True)
class Instrument:
    """One instrument of the feed. ``tick_size`` and ``lot_size`` are the units every price and size is a
    whole multiple of (for an exchange, its printed precision; its order filters may be coarser)."""

    id: str
    name: str
    kind: str
    tick_size: Decimal
    lot_size: Decimal

    @classmethod
    def of(cls, spec: InstrumentSpec) -> Instrument:
        return cls(spec.instrument_id, spec.display_name, spec.kind, spec.tick_size, spec.lot_size)


@dataclass(frozen=True, slots=True)
class Trade:
    """One execution: its price and size, ``side`` the side of the incoming order (``"buy"`` lifted an ask,
    ``"sell"`` hit a bid) and ``time_ns`` the feed's event time (ns since the epoch)."""

    price: Decimal
    size: Decimal
    side: str
    time_ns: int


class Book:
    """One instrument's book as of ``sequence``, best levels first (read-only).

    ``live`` is True when the book is verified to be the feed's (sequence, checksum and digest); a stale book
    (``live`` False) holds the last verified levels, or none, and ``reason`` says why in a few words."""

    __slots__ = (
        "_asks",
        "_bids",
        "_lot",
        "_raw_asks",
        "_raw_bids",
        "_tick",
        "checksum",
        "instrument_id",
        "live",
        "reason",
        "sequence",
    )

    def __init__(
        self,
        instrument: InstrumentSpec,
        sequence: int | None,
        live: bool,
        reason: str | None,
        bids: Sequence[Level],
        asks: Sequence[Level],
        checksum: int | None,
    ) -> None:
        self.instrument_id = instrument.instrument_id
        self.sequence = sequence
        """The sequence of the last message applied (None before the first snapshot)."""
        self.live = live
        self.reason = reason
        self.checksum = checksum
        """The top-10 checksum of these levels (the value the feed's message carried), None without a book."""
        self._tick, self._lot = instrument.tick_size, instrument.lot_size
        self._raw_bids, self._raw_asks = bids, asks
        self._bids: list[PriceSize] | None = None
        self._asks: list[PriceSize] | None = None

    @classmethod
    def of(cls, entry: InstrumentBook, depth: int) -> Book:
        """The book ``entry`` holds now, its top ``depth`` levels per side."""
        book = entry.book
        sequence = book.sequence
        return cls(
            entry.spec,
            sequence,
            not entry.stale,
            entry.stale_reason,
            book.bids(depth),
            book.asks(depth),
            None if sequence is None else book.checksum(),
        )

    def _levels(self, raw: Sequence[Level]) -> list[PriceSize]:
        tick, lot = self._tick, self._lot
        return [(tick * price, lot * size) for price, size in raw]

    @property
    def bids(self) -> list[PriceSize]:
        """``(price, size)`` per bid level, highest price first."""
        if self._bids is None:
            self._bids = self._levels(self._raw_bids)
        return list(self._bids)

    @property
    def asks(self) -> list[PriceSize]:
        """``(price, size)`` per ask level, lowest price first."""
        if self._asks is None:
            self._asks = self._levels(self._raw_asks)
        return list(self._asks)

    @property
    def best_bid(self) -> Decimal | None:
        """The highest bid price, None without bids."""
        return self._tick * self._raw_bids[0][0] if self._raw_bids else None

    @property
    def best_ask(self) -> Decimal | None:
        """The lowest ask price, None without asks."""
        return self._tick * self._raw_asks[0][0] if self._raw_asks else None

    @property
    def mid(self) -> Decimal | None:
        """The mid price, exact (half a tick when the spread is odd), None when a side is empty."""
        if not self._raw_bids or not self._raw_asks:
            return None
        return self._tick * (self._raw_bids[0][0] + self._raw_asks[0][0]) / 2

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Book):
            return NotImplemented
        return (self.instrument_id, self.sequence, self.live, self.reason, self.bids, self.asks, self.checksum) == (
            other.instrument_id,
            other.sequence,
            other.live,
            other.reason,
            other.bids,
            other.asks,
            other.checksum,
        )

    __hash__ = None  # type: ignore[assignment]  # equal by value, so not hashable

    def __repr__(self) -> str:
        state = "live" if self.live else f"stale: {self.reason}"
        return (
            f"Book({self.instrument_id!r}, sequence={self.sequence}, bid={self.best_bid}, ask={self.best_ask}, {state})"
        )


@dataclass(frozen=True, slots=True)
class Update:
    """One verified message of one instrument (or a change of its live state), in order.

    ``book`` is the book after it; ``trades`` the trades it carried. ``conflated`` counts the messages folded
    into this update because the reader fell behind (0 while it keeps up): the book is then the latest, and
    ``trades`` holds every folded message's trades up to a bound, ``missed_trades`` the ones beyond it."""

    instrument_id: str
    sequence: int | None
    book: Book
    trades: tuple[Trade, ...]
    conflated: int = 0
    missed_trades: int = 0


def trades_of(spec: InstrumentSpec, trades: Sequence[TickTrade], time_ns: int) -> list[Trade]:
    """The public trades of one message (its prices in ticks, sizes in lots)."""
    tick, lot = spec.tick_size, spec.lot_size
    return [Trade(tick * trade.price, lot * trade.size, aggressor_name(trade.aggressor), time_ns) for trade in trades]
