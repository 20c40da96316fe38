"""One Binance spot symbol's book, kept by Binance's rules for a local order book: a pure state machine (no I/O).

Binance documents ("How to manage a local order book correctly", spot WebSocket streams):

1. open the diff. depth stream and buffer its events (``U`` first update id, ``u`` final update id);
2. get a REST depth snapshot (``lastUpdateId``, ``bids``, ``asks``);
3. drop the buffered events with ``u <= lastUpdateId``; the first one applied must have
   ``U <= lastUpdateId + 1 <= u`` (otherwise the snapshot is older than the buffer: get a new one);
4. every next event must have ``U == previous u + 1``; anything else is a gap: discard the book, start again
   from a new snapshot (an event with ``u`` at or below the book's update id is a repeat and is ignored). An
   event that overlaps the book's update id (``U <= id + 1 <= u``) is applied like the first one after a
   snapshot: its quantities are absolute, so the ids it repeats change nothing. That is what lets a renewed
   connection, whose events are batched on their own boundaries, take over a live book without a snapshot;
5. quantities are absolute; ``"0"`` removes the level (removing an absent level is normal).

:class:`SymbolBook` takes the parsed events (:func:`parse_depth`, :func:`parse_agg_trade`) and snapshots
(:func:`parse_snapshot`) and answers with what a :class:`~feed_server.server.exchanges.adapter.BookSink` needs:
:class:`BookOut`, :class:`ChangesOut` and :class:`StaleOut`. Prices and quantities become integers of the
symbol's units (its printed precision, not its order filters) with
:func:`~feed_server.server.exchanges.adapter.to_units`; a value that does not fit stales the symbol (reason
names the symbol and the value) and asks for a new snapshot. An aggregate trade repeated (its id ``a`` at or
below the last one passed, as a renewed connection repeats the last trades) is dropped. The whole book is
kept, including levels beyond the snapshot's depth that the diffs add; :attr:`SymbolBook.needs_snapshot` tells
the adapter when to fetch one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from feed_server.protocol.levels import Level, LevelChange, Side, Trade
from feed_server.server.exchanges.adapter import NotOnGrid, to_units

__all__ = [
    "BookOut",
    "ChangesOut",
    "DepthEvent",
    "MalformedEvent",
    "Output",
    "Snapshot",
    "StaleOut",
    "SymbolBook",
    "TradeEvent",
    "parse_agg_trade",
    "parse_depth",
    "parse_snapshot",
]

RawLevels = tuple[tuple[str, str], ...]
MAX_BUFFERED = 10_000  # depth events kept while waiting for a snapshot (the oldest go first)


class MalformedEvent(ValueError):
    """A Binance payload without the fields (or field types) Binance documents."""


@dataclass(frozen=True, slots=True)
class DepthEvent:
    """A ``depthUpdate``: update ids ``[first_id, final_id]``, event time ``E`` (ms), absolute quantities."""

    first_id: int
    final_id: int
    time_ms: int
    bids: RawLevels
    asks: RawLevels


@dataclass(frozen=True, slots=True)
class TradeEvent:
    """An ``aggTrade``: price and quantity as Binance's strings; ``buyer_is_maker`` is ``m``; ``trade_id`` is
    the aggregate trade id ``a`` (-1 when absent)."""

    time_ms: int
    price: str
    quantity: str
    buyer_is_maker: bool
    trade_id: int = -1


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A REST ``/api/v3/depth`` answer."""

    last_update_id: int
    bids: RawLevels
    asks: RawLevels


@dataclass(frozen=True, slots=True)
class BookOut:
    """A whole verified book: bids best (highest) first, asks best (lowest) first."""

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    time_ns: int


@dataclass(frozen=True, slots=True)
class ChangesOut:
    """Level changes (size 0 removes) and trades on top of the last book."""

    changes: tuple[LevelChange, ...]
    trades: tuple[Trade, ...]
    time_ns: int


@dataclass(frozen=True, slots=True)
class StaleOut:
    """The book is not whole any more; ``reason`` is one line for people."""

    reason: str


Output = BookOut | ChangesOut | StaleOut


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedEvent(f"field {key!r} is {value!r}, not an integer")
    return value


def _levels(data: Mapping[str, Any], key: str) -> RawLevels:
    value = data.get(key)
    if not isinstance(value, list):
        raise MalformedEvent(f"field {key!r} is {value!r}, not a list of [price, quantity]")
    levels: list[tuple[str, str]] = []
    for item in value:
        if not isinstance(item, list) or len(item) < 2 or not isinstance(item[0], str) or not isinstance(item[1], str):
            raise MalformedEvent(f"field {key!r} holds {item!r}, not [price, quantity] strings")
        levels.append((item[0], item[1]))
    return tuple(levels)


def parse_depth(data: Mapping[str, Any]) -> DepthEvent:
    """A ``depthUpdate`` payload (``e``, ``E``, ``U``, ``u``, ``b``, ``a``); MalformedEvent when it is not one."""
    if data.get("e") != "depthUpdate":
        raise MalformedEvent(f"event type {data.get('e')!r} is not 'depthUpdate'")
    first, final = _int(data, "U"), _int(data, "u")
    if final < first:
        raise MalformedEvent(f"final update id u={final} is below the first U={first}")
    return DepthEvent(first, final, _int(data, "E"), _levels(data, "b"), _levels(data, "a"))


def parse_agg_trade(data: Mapping[str, Any]) -> TradeEvent:
    """An ``aggTrade`` payload (``e``, ``E``, ``p``, ``q``, ``m``); MalformedEvent when it is not one."""
    if data.get("e") != "aggTrade":
        raise MalformedEvent(f"event type {data.get('e')!r} is not 'aggTrade'")
    price, quantity, maker = data.get("p"), data.get("q"), data.get("m")
    if not isinstance(price, str) or not isinstance(quantity, str) or not isinstance(maker, bool):
        raise MalformedEvent(f"aggTrade fields p={price!r} q={quantity!r} m={maker!r} are not string, string, bool")
    trade_id = data.get("a")
    return TradeEvent(
        _int(data, "E"), price, quantity, maker, trade_id if isinstance(trade_id, int) and trade_id >= 0 else -1
    )


def parse_snapshot(data: Mapping[str, Any]) -> Snapshot:
    """A ``/api/v3/depth`` answer (``lastUpdateId``, ``bids``, ``asks``); MalformedEvent when it is not one."""
    return Snapshot(_int(data, "lastUpdateId"), _levels(data, "bids"), _levels(data, "asks"))


class SymbolBook:
    """One symbol's sync state and book (see the module docstring). Starts waiting for a snapshot."""

    def __init__(self, symbol: str, tick_size: Decimal, lot_size: Decimal) -> None:
        self.symbol = symbol
        self.tick_size = tick_size
        self.lot_size = lot_size
        self._buffer: deque[DepthEvent] = deque(maxlen=MAX_BUFFERED)
        self._bids: dict[int, int] = {}
        self._asks: dict[int, int] = {}
        self._live = False
        self._update_id = 0  # the book's update id once live
        self._last_trade = -1  # the aggregate id of the last trade passed on

    @property
    def live(self) -> bool:
        return self._live

    @property
    def needs_snapshot(self) -> bool:
        return not self._live

    @property
    def update_id(self) -> int:
        return self._update_id

    def bids(self) -> tuple[Level, ...]:
        return tuple(sorted(self._bids.items(), reverse=True))

    def asks(self) -> tuple[Level, ...]:
        return tuple(sorted(self._asks.items()))

    def reset(self) -> None:
        """Forget everything (a new connection): wait for new events and a new snapshot."""
        self._buffer.clear()
        self._drop_book()

    def _drop_book(self) -> None:
        self._bids.clear()
        self._asks.clear()
        self._live = False
        self._update_id = 0

    def _fault(self, reason: str) -> list[Output]:
        """Discard the book; the caller buffers from here on and asks for a new snapshot."""
        self._drop_book()
        return [StaleOut(reason)]

    def on_depth(self, event: DepthEvent) -> list[Output]:
        """A depth event: buffered until a snapshot, then applied by the update-id rules."""
        if not self._live:
            self._buffer.append(event)
            return []
        if event.final_id <= self._update_id:
            return []  # a repeat of what the book already holds
        expected = self._update_id + 1
        if event.first_id > expected:
            last = self._update_id
            self._drop_book()
            self._buffer.append(event)
            return [StaleOut(f"binance: update ids jumped from {last} to {event.first_id}; fetching a new snapshot")]
        try:
            changes = self._apply(event)
        except NotOnGrid as exc:
            return self._fault(f"binance: {self.symbol}: {exc}; fetching a new snapshot")
        return [ChangesOut(changes, (), event.time_ms * 1_000_000)]

    def on_trade(self, event: TradeEvent) -> list[Output]:
        """An aggregate trade: passed on while the book is live (the aggressor sells when the buyer is maker)."""
        if not self._live:
            return []
        if 0 <= event.trade_id <= self._last_trade:
            return []  # passed on already (a renewed connection repeats the last trades)
        try:
            price = to_units(event.price, self.tick_size, "trade price")
            size = to_units(event.quantity, self.lot_size, "trade quantity")
        except NotOnGrid as exc:
            return self._fault(f"binance: {self.symbol}: {exc}; fetching a new snapshot")
        self._last_trade = max(self._last_trade, event.trade_id)
        trade = Trade(price, size, Side.ASK if event.buyer_is_maker else Side.BID)
        return [ChangesOut((), (trade,), event.time_ms * 1_000_000)]

    def on_snapshot(self, snapshot: Snapshot, now_ns: int) -> list[Output]:
        """A REST snapshot: the book from it and the buffered events after it, or a stale when it cannot be used."""
        if self._live:
            return []  # a snapshot nobody needs any more (one was already used)
        events = [e for e in self._buffer if e.final_id > snapshot.last_update_id]
        self._buffer.clear()
        self._buffer.extend(events)
        if events and events[0].first_id > snapshot.last_update_id + 1:
            return [
                StaleOut(
                    f"binance: snapshot lastUpdateId {snapshot.last_update_id} is older than the buffered updates "
                    f"(from {events[0].first_id}); fetching a new snapshot"
                )
            ]
        try:
            bids = self._convert(snapshot.bids, Side.BID)
            asks = self._convert(snapshot.asks, Side.ASK)
        except NotOnGrid as exc:
            return [StaleOut(f"binance: {self.symbol}: snapshot {exc}; fetching a new snapshot")]
        self._buffer.clear()
        self._bids = {c.price: c.size for c in bids if c.size}
        self._asks = {c.price: c.size for c in asks if c.size}
        self._live = True
        self._update_id = snapshot.last_update_id
        time_ns = now_ns
        for event in events:
            for out in self.on_depth(event):
                if isinstance(out, StaleOut):
                    return [out]
                time_ns = out.time_ns
        return [BookOut(self.bids(), self.asks(), time_ns)]

    def _convert(self, levels: RawLevels, side: Side) -> list[LevelChange]:
        what = "bid" if side is Side.BID else "ask"
        return [
            LevelChange(
                side, to_units(price, self.tick_size, f"{what} price"), to_units(qty, self.lot_size, f"{what} quantity")
            )
            for price, qty in levels
        ]

    def _apply(self, event: DepthEvent) -> tuple[LevelChange, ...]:
        """Apply one in-sequence event whole (every value is converted before anything changes)."""
        changes = (*self._convert(event.bids, Side.BID), *self._convert(event.asks, Side.ASK))
        for change in changes:
            book = self._bids if change.side is Side.BID else self._asks
            if change.size:
                book[change.price] = change.size
            else:
                book.pop(change.price, None)
        self._update_id = event.final_id
        return changes
