"""What an exchange adapter gives the feed, and the exact conversion of exchange numbers into ticks and lots.

An adapter (``binance.BinanceAdapter``, ``kraken.KrakenAdapter``) knows one exchange's public WebSocket/REST
feed. At start-up ``instruments()`` reads the symbols' metadata and returns one :class:`InstrumentSpec` per
symbol (id ``<BASE>-<QUOTE>`` from the exchange's own metadata, exact tick and lot size, kind ``crypto``).
Then ``run(sink)`` runs until cancelled: it connects, subscribes, keeps each symbol's book by the exchange's
rules (Binance's update-id sequencing with a REST snapshot, Kraken's CRC32), and tells the :class:`BookSink`
only what passed those checks:

- ``book(id, bids, asks, time_ns)``: a whole verified book (the first one, or one rebuilt after a resync); the
  instrument is live from here;
- ``changes(id, changes, trades, time_ns)``: level changes (size 0 removes a level) and trades, in order, on
  top of the last ``book``;
- ``stale(id, reason)``: the instrument's book is not whole (the connection is down, the symbol is being
  resynchronised, a value could not be converted): nothing more for it until its next ``book``.

It never gives up: a lost connection marks every symbol stale and it reconnects with backoff and jitter,
resubscribes and rebuilds each book from a fresh snapshot. Prices and sizes become integer ticks and lots with
:func:`to_units`, exactly: a value that is not a whole number of ticks (lots) is an error, logged with the
symbol, that stales the symbol, never a rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Protocol

from feed_server.protocol.errors import MarketDataError
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.levels import Level, LevelChange, Trade

__all__ = ["BookSink", "ExchangeAdapter", "NotOnGrid", "SourceUnavailable", "to_units"]


class SourceUnavailable(MarketDataError):
    """The exchange could not give what start-up needs (unreachable, an unknown symbol, bad metadata): one line."""


class NotOnGrid(ValueError):
    """An exchange value that is not a whole number of ticks (lots), or not a number."""


def to_units(text: str, step: Decimal, what: str = "value") -> int:
    """``text`` (an exchange's decimal string, e.g. ``"67273.50000000"``) as a whole number of ``step``.

    Raises NotOnGrid naming ``what`` when it is not a number or not an exact multiple of ``step``."""
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise NotOnGrid(f"{what} {text!r} is not a number") from None
    if not value.is_finite():
        raise NotOnGrid(f"{what} {text!r} is not a number")
    units, remainder = divmod(value, step)
    if remainder != 0:
        raise NotOnGrid(f"{what} {text} is not a multiple of {step}")
    return int(units)


class BookSink(Protocol):
    """Where an adapter puts what passed the exchange's checks (see the module docstring)."""

    def book(self, instrument_id: str, bids: Sequence[Level], asks: Sequence[Level], time_ns: int) -> None: ...

    def changes(
        self, instrument_id: str, changes: Sequence[LevelChange], trades: Sequence[Trade], time_ns: int
    ) -> None: ...

    def stale(self, instrument_id: str, reason: str) -> None: ...


class ExchangeAdapter(Protocol):
    """One exchange's feed (see the module docstring)."""

    @property
    def name(self) -> str: ...  # "binance", "kraken"

    @property
    def max_depth(self) -> int: ...  # the levels per side the feed may serve of each book

    @property
    def description(self) -> str: ...  # one line for people: "binance BTCUSDT,ETHUSDT (wss://stream.binance.com:9443)"

    async def instruments(self) -> list[InstrumentSpec]: ...  # SourceUnavailable (one line) when it cannot

    async def run(self, sink: BookSink) -> None: ...  # until cancelled; never gives up
