"""Coinbase Advanced Trade market data, pure (no I/O): product metadata, frames, one product's level2 book.

- :func:`spec_from_product`: one element of ``GET /api/v3/brokerage/market/products`` as an InstrumentSpec. Its
  units come from the precision Coinbase prints (the most decimals among the product's price strings, and among its
  size strings, via :func:`~feed_server.server.exchanges.adapter.decimals_in`); its order filters are
  ``price_increment`` (or ``quote_increment``) and ``base_increment``.
- :func:`parse_frame`: a WebSocket frame as a :class:`Frame` (the envelope ``channel`` / ``sequence_num`` /
  ``timestamp`` / ``events``, or an ``{"type": "error"}`` frame).
- :class:`SequenceCheck`: ``sequence_num`` is per connection, across every channel, and goes up by exactly 1.
- :func:`parse_l2_event` / :class:`ProductBook`: a ``level2`` (``l2_data``) event, and the book it keeps: a
  ``snapshot`` replaces the book and makes it live; an ``update`` sets each level to ``new_quantity`` (0 removes
  it) and is ignored while the book is not live. Coinbase's book is full depth: the whole of it is kept.
- :func:`parse_trade` / :meth:`ProductBook.trade`: a ``market_trades`` trade. Coinbase documents a public trade's
  ``side`` as the maker's, so the aggressor is the other side (``BUY`` -> ask, ``SELL`` -> bid).

Any fault raises :class:`CoinbaseError`, whose text is the reason and whose ``product_id`` says which product it
spoils (None when the frame names none); a book that faulted is not live until its next snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.levels import Level, LevelChange, Side, Trade
from feed_server.server.exchanges.adapter import NotOnGrid, decimals_in, to_units, unit_of
from feed_server.server.exchanges.kraken_book import rfc3339_ns

__all__ = [
    "PRICE_FIELDS",
    "SIZE_FIELDS",
    "CoinbaseError",
    "Frame",
    "L2Event",
    "L2Level",
    "ProductBook",
    "RawTrade",
    "SequenceCheck",
    "parse_frame",
    "parse_l2_event",
    "parse_trade",
    "spec_from_product",
]

PRICE_FIELDS = ("quote_increment", "price_increment", "price", "mid_market_price")
"""The product strings whose decimals make the tick (the unit of every price)."""
SIZE_FIELDS = ("base_increment", "base_min_size", "base_max_size")
"""The product strings whose decimals make the lot (the unit of every size)."""

_BOOK_SIDES = {"bid": Side.BID, "offer": Side.ASK}
_AGGRESSORS = {"BUY": Side.ASK, "SELL": Side.BID}  # the maker's side -> the taker's


class CoinbaseError(ValueError):
    """A frame, an event or a product could not be used; the text is the reason (the stale reason's core)."""

    def __init__(self, reason: str, product_id: str | None = None) -> None:
        super().__init__(reason)
        self.product_id = product_id


# -- metadata -------------------------------------------------------------------------------------------------


def _text(raw: Mapping[str, Any], *keys: str) -> str | None:
    """The first non-empty string among ``keys``."""
    for key in keys:
        value = raw.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _filter(raw: Mapping[str, Any], product_id: str, *keys: str) -> Decimal:
    """An order filter (an increment) as a positive, normalised Decimal: "0.01000000" -> 0.01, "10" -> 10."""
    text = _text(raw, *keys)
    try:
        value = Decimal(text) if text is not None else None
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value <= 0:
        raise CoinbaseError(f"{product_id}: {' / '.join(keys)} is {raw.get(keys[0])!r}, not a positive number")
    value = value.normalize()
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value


def spec_from_product(raw: Mapping[str, Any]) -> InstrumentSpec:
    """One product of the products endpoint as an InstrumentSpec (id: the product id); CoinbaseError if unusable."""
    product_id = _text(raw, "product_id")
    if product_id is None:
        raise CoinbaseError(f"a product without product_id: {raw!r:.120}")
    base = _text(raw, "base_display_symbol", "base_currency_id")
    quote = _text(raw, "quote_display_symbol", "quote_currency_id")
    if base is None or quote is None:
        raise CoinbaseError(f"{product_id}: no base/quote currency in the product", product_id)
    order_tick = _filter(raw, product_id, "price_increment", "quote_increment")
    order_lot = _filter(raw, product_id, "base_increment")
    tick = unit_of(max(decimals_in(raw.get(key)) for key in PRICE_FIELDS if isinstance(raw.get(key), str)))
    lot = unit_of(max(decimals_in(raw.get(key)) for key in SIZE_FIELDS if isinstance(raw.get(key), str)))
    return InstrumentSpec(
        product_id,
        f"{base} / {quote} (Coinbase)",
        "crypto",
        tick,
        lot,
        order_tick_size=order_tick,
        order_lot_size=order_lot,
    )


# -- frames -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: a channel message (``channel`` set) or an error frame (``error`` set)."""

    channel: str | None
    sequence_num: int | None  # None: absent or not an integer
    time_ns: int | None  # the envelope's ``timestamp``; None when absent or not RFC 3339
    events: tuple[Any, ...]
    error: str | None = None


def parse_frame(text: str | bytes) -> Frame:
    """A frame's envelope; CoinbaseError when it is not JSON or not an object (the events are parsed later)."""
    try:
        message = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise CoinbaseError(f"a frame that is not JSON ({exc})") from None
    if not isinstance(message, dict):
        raise CoinbaseError(f"a frame that is not an object: {message!r:.80}")
    if message.get("type") == "error":
        detail = message.get("message") or message.get("reason") or "(no message)"
        return Frame(None, None, None, (), error=str(detail))
    channel = message.get("channel")
    sequence = message.get("sequence_num")
    events = message.get("events")
    return Frame(
        channel if isinstance(channel, str) else None,
        sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else None,
        rfc3339_ns(message.get("timestamp")),
        tuple(events) if isinstance(events, list) else (),
    )


class SequenceCheck:
    """One connection's ``sequence_num``: each must be the previous one plus 1 (the first may be anything)."""

    def __init__(self) -> None:
        self.last: int | None = None

    def check(self, sequence_num: int) -> str | None:
        """None when in order; else the fault (``"sequence_num jumped from 41 to 43"``). Follows on from it."""
        last, self.last = self.last, sequence_num
        if last is None or sequence_num == last + 1:
            return None
        if sequence_num > last:
            return f"sequence_num jumped from {last} to {sequence_num}"
        return f"sequence_num went from {last} back to {sequence_num}"


# -- level2 -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class L2Level:
    side: Side
    price: str
    quantity: str


@dataclass(frozen=True, slots=True)
class L2Event:
    kind: str  # "snapshot" | "update"
    product_id: str
    levels: tuple[L2Level, ...]


def _number_text(value: object) -> str | None:
    """A price/size as text: Coinbase sends strings; a JSON number (decoded as Decimal or int) is accepted."""
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        return str(value)
    return None


def parse_l2_event(event: object) -> L2Event:
    """One event of an ``l2_data`` message; CoinbaseError (naming the product when it can) if malformed."""
    if not isinstance(event, Mapping):
        raise CoinbaseError(f"an l2_data event that is not an object: {event!r:.80}")
    product_id = event.get("product_id")
    if not isinstance(product_id, str) or not product_id:
        raise CoinbaseError(f"an l2_data event without product_id: {event!r:.80}")
    kind = event.get("type")
    updates = event.get("updates")
    if kind not in ("snapshot", "update") or not isinstance(updates, list):
        raise CoinbaseError(
            f"{product_id}: malformed l2_data event (type {kind!r}, updates {updates!r:.40})", product_id
        )
    levels: list[L2Level] = []
    for update in updates:
        if not isinstance(update, Mapping):
            raise CoinbaseError(f"{product_id}: malformed l2_data level {update!r:.80}", product_id)
        side_text = update.get("side")
        side = _BOOK_SIDES.get(side_text) if isinstance(side_text, str) else None
        price, quantity = _number_text(update.get("price_level")), _number_text(update.get("new_quantity"))
        if side is None or price is None or quantity is None:
            raise CoinbaseError(f"{product_id}: malformed l2_data level {update!r:.80}", product_id)
        levels.append(L2Level(side, price, quantity))
    return L2Event(str(kind), product_id, tuple(levels))


# -- market_trades ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RawTrade:
    product_id: str
    price: str
    size: str
    side: str  # the maker's: "BUY" | "SELL"
    time_ns: int | None


def parse_trade(raw: object) -> RawTrade:
    """One trade of a ``market_trades`` event; CoinbaseError (naming the product when it can) if malformed."""
    product_id = raw.get("product_id") if isinstance(raw, Mapping) else None
    if not isinstance(raw, Mapping) or not isinstance(product_id, str) or not product_id:
        raise CoinbaseError(f"a trade without product_id: {raw!r:.80}")
    price, size, side = _number_text(raw.get("price")), _number_text(raw.get("size")), raw.get("side")
    if price is None or size is None or side not in _AGGRESSORS:
        raise CoinbaseError(f"{product_id}: malformed trade {raw!r:.100}", product_id)
    return RawTrade(product_id, price, size, str(side), rfc3339_ns(raw.get("time")))


# -- one product's book -----------------------------------------------------------------------------------------


class ProductBook:
    """One product's level2 book in ticks and lots (``tick``/``lot``: the spec's units); see the module docstring."""

    def __init__(self, product_id: str, tick: Decimal, lot: Decimal) -> None:
        self.product_id = product_id
        self.tick = tick
        self.lot = lot
        self.live = False
        self._sides: dict[Side, dict[int, int]] = {Side.BID: {}, Side.ASK: {}}

    def reset(self) -> None:
        """Not live any more (a fault, a lost connection): updates are ignored until the next snapshot."""
        self.live = False
        self._sides = {Side.BID: {}, Side.ASK: {}}

    def snapshot(self, levels: Sequence[L2Level]) -> tuple[list[Level], list[Level]]:
        """Replace the book (live from here); ``(bids, asks)`` best first. CoinbaseError: the book is not live."""
        converted = self._convert(levels)
        sides: dict[Side, dict[int, int]] = {Side.BID: {}, Side.ASK: {}}
        for side, price, size in converted:
            if size:
                sides[side][price] = size
            else:
                sides[side].pop(price, None)
        self._sides = sides
        self.live = True
        return self.levels(Side.BID), self.levels(Side.ASK)

    def update(self, levels: Sequence[L2Level]) -> list[LevelChange] | None:
        """Apply an update in order; the level changes it made (no-ops left out). None: not live, ignored.

        CoinbaseError when a value does not fit the units: nothing is applied and the book is not live."""
        if not self.live:
            return None
        converted = self._convert(levels)
        changes: list[LevelChange] = []
        for side, price, size in converted:
            book = self._sides[side]
            if book.get(price, 0) == size:
                continue
            if size:
                book[price] = size
            else:
                del book[price]
            changes.append(LevelChange(side, price, size))
        return changes

    def trade(self, raw: RawTrade) -> Trade:
        """A trade in ticks and lots, with the aggressor's side; CoinbaseError when a value does not fit."""
        try:
            price = to_units(raw.price, self.tick, "trade price")
            size = to_units(raw.size, self.lot, "trade size")
        except NotOnGrid as exc:
            self.reset()
            raise CoinbaseError(f"{self.product_id}: {exc}", self.product_id) from None
        if price <= 0 or size <= 0:
            self.reset()
            raise CoinbaseError(f"{self.product_id}: trade {raw.size} at {raw.price} is not positive", self.product_id)
        return Trade(price, size, _AGGRESSORS[raw.side])

    def levels(self, side: Side) -> list[Level]:
        """One side as ``(ticks, lots)``, best first."""
        book = self._sides[side]
        return [(price, book[price]) for price in sorted(book, reverse=side is Side.BID)]

    def _convert(self, levels: Sequence[L2Level]) -> list[tuple[Side, int, int]]:
        """Every level in units, checked before anything is applied; a fault resets the book."""
        out: list[tuple[Side, int, int]] = []
        try:
            for level in levels:
                price = to_units(level.price, self.tick, "price")
                size = to_units(level.quantity, self.lot, "quantity")
                if price <= 0 or size < 0:
                    raise NotOnGrid(f"level {level.quantity} at {level.price} is out of range")
                out.append((level.side, price, size))
        except NotOnGrid as exc:
            self.reset()
            raise CoinbaseError(f"{self.product_id}: {exc}", self.product_id) from None
        return out
