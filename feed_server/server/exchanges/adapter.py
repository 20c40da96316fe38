"""What an exchange adapter gives the feed, and the exact conversion of exchange numbers into ticks and lots.

An adapter (``binance.BinanceAdapter``, ``kraken.KrakenAdapter``, ``coinbase.CoinbaseAdapter``) knows one
exchange's public WebSocket/REST feed. At start-up ``instruments()`` reads the symbols' metadata and returns one
:class:`InstrumentSpec` per symbol (id ``<BASE>-<QUOTE>`` from the exchange's own metadata, exact units and the
order filters, kind ``crypto``). Then ``run(sink)`` runs until cancelled: it connects, subscribes, keeps each
symbol's book by the exchange's rules (Binance's update-id sequencing with a REST snapshot, Kraken's CRC32,
Coinbase's sequence numbers), and tells the :class:`BookSink` only what passed those checks:

- ``book(id, bids, asks, time_ns)``: a whole verified book (the first one, or one rebuilt after a resync); the
  instrument is live from here;
- ``changes(id, changes, trades, time_ns)``: level changes (size 0 removes a level) and trades, in order, on
  top of the last ``book``;
- ``stale(id, reason)``: the instrument's book is not whole (the connection is down, the symbol is being
  resynchronised, a value could not be converted): nothing more for it until its next ``book``.

It never gives up: a lost connection marks every symbol stale and it reconnects with backoff and jitter,
resubscribes and rebuilds each book from a fresh snapshot.

Units. An instrument's tick and lot (the wire's units) come from the precision the exchange prints its numbers
with, not from its order filters: real books break the filters (filters change, resting orders keep the
granularity they were placed with, and a level is a sum of orders), so an off-filter value is normal input. The
unit is ``10**-decimals`` (:func:`unit_of`) of Binance's ``quotePrecision``/``baseAssetPrecision``, Kraken's
``price_precision``/``qty_precision``, Coinbase's most precise increment or metadata string
(:func:`decimals_in`); the filters stay on the spec as ``order_tick_size``/``order_lot_size``. Prices and sizes
become integers with :func:`to_units`, exactly: a value that still does not fit (more decimals than the precision,
or beyond 64 bits) is an error, logged once with the symbol, that stales the symbol until a paced retry; never a
rounding.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Protocol

from feed_server.pacing import Backoff
from feed_server.protocol.errors import MarketDataError
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.levels import Level, LevelChange, Trade

__all__ = [
    "BookSink",
    "ExchangeAdapter",
    "NotOnGrid",
    "SourceUnavailable",
    "decimals_in",
    "retry_until_listed",
    "to_units",
    "unit_of",
]

logger = logging.getLogger(__name__)

_INT64_MAX = 2**63 - 1  # a Level's price_ticks and size_lots are int64 on the wire


class SourceUnavailable(MarketDataError):
    """The exchange could not give what start-up needs (unreachable, an unknown symbol, bad metadata): one line."""


class NotOnGrid(ValueError):
    """An exchange value that is not a whole number of ticks (lots), or not a number."""


def unit_of(decimals: int) -> Decimal:
    """The unit that holds every value printed with ``decimals`` decimals: 8 -> 0.00000001, 0 -> 1."""
    if decimals < 0:
        raise ValueError(f"a precision of {decimals} decimals")
    return Decimal(1).scaleb(-decimals)


def decimals_in(text: object) -> int:
    """The decimals an exchange printed in ``text``, trailing zeros included ("0.01000" -> 5, "5" -> 0).

    0 for anything that is not a finite decimal string or number."""
    try:
        value = Decimal(str(text))
    except (InvalidOperation, ValueError):
        return 0
    exponent = value.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def to_units(text: str, step: Decimal, what: str = "value") -> int:
    """``text`` (an exchange's decimal string, e.g. ``"67273.50000000"``) as a whole number of ``step``.

    Raises NotOnGrid naming ``what`` when it is not a number, not an exact multiple of ``step`` (more decimals
    than the unit holds), or too large for the wire's 64 bits."""
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise NotOnGrid(f"{what} {text!r} is not a number") from None
    if not value.is_finite():
        raise NotOnGrid(f"{what} {text!r} is not a number")
    try:
        units, remainder = divmod(value, step)
    except InvalidOperation:  # a quotient of more digits than Decimal's context holds: far beyond 64 bits
        raise NotOnGrid(f"{what} {text} is too large for 64 bits in units of {step:f}") from None
    if remainder != 0:
        raise NotOnGrid(f"{what} {text} has more decimals than the unit {step:f} holds")
    if abs(units) > _INT64_MAX:
        raise NotOnGrid(f"{what} {text} is too large for 64 bits in units of {step:f}")
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


async def retry_until_listed(load: Callable[[], Awaitable[object]], backoff: Backoff) -> None:
    """``load()`` (an adapter's ``instruments()``) until it succeeds: each SourceUnavailable logged, then retried
    after the backoff's next delay (an adapter run without its metadata read first never gives up)."""
    while True:
        try:
            await load()
        except SourceUnavailable as exc:
            delay = backoff.delay()
            logger.warning("%s; retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
        else:
            backoff.reset()
            return
