"""A live exchange as the engine's source (``python -m feed_server --source binance|kraken|coinbase``).

:class:`LiveSource` is the :class:`~feed_server.server.exchanges.adapter.BookSink` of one exchange adapter and
an :class:`~feed_server.server.sources.EventSource` of the engine. What the adapter hands it has passed the
exchange's own checks; from there the feed is what it is for the simulator: it keeps each instrument's book,
gives every message its own contiguous sequence and computes its own checksums and digests (the fan-out), so
consumers see the same contract at any depth up to the adapter's ``max_depth``.

- ``book(...)`` replaces the instrument's book: every subscriber gets a snapshot of it (``Fanout.reset``) and the
  instrument's source state becomes whole;
- ``changes(...)`` is published at once as one update (no wait for the engine's next wake-up);
- ``stale(...)`` marks the instrument's source stale (``Fanout.set_source_stale``): its messages say so, with the
  reason, until its next ``book``. Every instrument starts stale, until the adapter's first book of it.

The engine runs the adapter beside its loop (``run``) and asks the source for heartbeats only: an instrument
without a message for ``HEARTBEAT_S`` gets one, which carries its source state, so an idle stale source never
looks like a quiet live market. An update that would cross the book (an exchange level left behind on the other
side) drops the crossed levels of the other side, the latest update winning, and publishes those removals too:
the feed never serves a crossed book.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from feed_server.protocol.book import OrderBook
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.levels import Level, LevelChange, Side, Trade
from feed_server.server.exchanges.adapter import ExchangeAdapter
from feed_server.server.simulator import Event
from feed_server.server.sources import END_NS

if TYPE_CHECKING:
    from feed_server.server.fanout import Fanout

__all__ = ["HEARTBEAT_S", "LiveBook", "LiveSource"]

logger = logging.getLogger(__name__)

HEARTBEAT_S = 0.5
_HEARTBEAT_NS = int(HEARTBEAT_S * 1e9)


class LiveBook:
    """One instrument's book as the exchange gave it (the fan-out's BookSource)."""

    __slots__ = ("book", "instrument_id", "last_ns", "time_ns")

    def __init__(self, instrument_id: str) -> None:
        self.instrument_id = instrument_id
        self.book = OrderBook(instrument_id)
        self.time_ns = time.time_ns()  # wall time of its last message (the source's times are absolute)
        self.last_ns = 0  # monotonic time of its last published message (heartbeats are due HEARTBEAT_S after)


class LiveSource:
    """One exchange adapter as the engine's source (see the module docstring)."""

    paced = True
    starts_on_subscriber = False
    absolute_times = True
    depth_note = ""

    def __init__(self, adapter: ExchangeAdapter, specs: Sequence[InstrumentSpec]) -> None:
        if not specs:
            raise ValueError("a live source needs at least one instrument")
        self.adapter = adapter
        self.specs: dict[str, InstrumentSpec] = {spec.instrument_id: spec for spec in specs}
        self._books = {iid: LiveBook(iid) for iid in self.specs}
        self._fanout: Fanout | None = None
        self._counts = dict.fromkeys(self.specs, 0)
        self._mono_offset_ns = time.monotonic_ns()  # monotonic time of the engine's time 0 (see advance)

    @property
    def books(self) -> Mapping[str, LiveBook]:
        return self._books

    @property
    def max_depth(self) -> int:
        return self.adapter.max_depth

    @property
    def description(self) -> str:
        return self.adapter.description

    def bind(self, fanout: Fanout) -> None:
        self._fanout = fanout
        now = time.time_ns()
        for live in self._books.values():
            fanout.set_source_stale(live, f"{self.adapter.name}: waiting for the first book", now)

    def event_counts(self) -> dict[str, int]:
        return dict(self._counts)

    async def run(self) -> None:
        """The adapter, until cancelled (it never gives up on its own)."""
        await self.adapter.run(self)

    # ----------------------------------------------------------------- the engine's part: heartbeats
    def next_due_ns(self) -> int:
        if not self._books:
            return END_NS
        return min(live.last_ns for live in self._books.values()) + _HEARTBEAT_NS - self._mono_offset_ns

    def advance(
        self, fanout: Fanout, elapsed_ns: int, max_events: int | None = None, deadline_ns: int | None = None
    ) -> int:
        """A heartbeat for each instrument quiet for HEARTBEAT_S (the updates are published as they arrive)."""
        now = time.monotonic_ns()
        self._mono_offset_ns = now - elapsed_ns
        count = 0
        for live in self._books.values():
            if now - live.last_ns >= _HEARTBEAT_NS:
                self._publish(live, (_HEARTBEAT,), time.time_ns())
                count += 1
        return count

    # ----------------------------------------------------------------- the adapter's part (BookSink)
    def book(self, instrument_id: str, bids: Sequence[Level], asks: Sequence[Level], time_ns: int) -> None:
        live = self._books[instrument_id]
        fanout = self._require_fanout()
        book = live.book
        sequence = book.sequence if book.sequence is not None else 0
        book.clear()
        for price, size in bids:
            book.set_level(Side.BID, price, size)
        for price, size in asks:
            book.set_level(Side.ASK, price, size)
        self._uncross(book, Side.BID)
        book.sequence = sequence
        live.time_ns = time_ns
        live.last_ns = time.monotonic_ns()
        fanout.reset(live, fanout.sequence(instrument_id) + 1)  # a snapshot of the new book to every subscriber
        fanout.set_source_stale(live, None, time_ns)  # then a heartbeat on top of it: whole again
        self._counts[instrument_id] += 1

    def changes(
        self, instrument_id: str, changes: Sequence[LevelChange], trades: Sequence[Trade], time_ns: int
    ) -> None:
        live = self._books[instrument_id]
        book = live.book
        applied = list(changes)
        for change in changes:
            book.set_level(change.side, change.price, change.size)
        if applied:
            applied.extend(self._uncross(book, applied[-1].side))
        self._publish(live, (Event(0, 0, tuple(applied), tuple(trades)),), time_ns)
        self._counts[instrument_id] += 1

    def stale(self, instrument_id: str, reason: str) -> None:
        live = self._books[instrument_id]
        self._require_fanout().set_source_stale(live, reason, time.time_ns())
        live.last_ns = time.monotonic_ns()

    # ----------------------------------------------------------------- internals
    def _publish(self, live: LiveBook, events: Sequence[Event], time_ns: int) -> None:
        live.time_ns = max(live.time_ns, time_ns)
        live.last_ns = time.monotonic_ns()
        self._require_fanout().publish(live, events, live.time_ns)

    def _require_fanout(self) -> Fanout:
        if self._fanout is None:
            raise RuntimeError("the live source is not bound to a fan-out yet")
        return self._fanout

    @staticmethod
    def _uncross(book: OrderBook, latest: Side) -> list[LevelChange]:
        """Remove the levels of the side opposite ``latest`` that the best ``latest`` level crosses; the removals."""
        removed: list[LevelChange] = []
        while True:
            bid, ask = book.best_bid(), book.best_ask()
            if bid is None or ask is None or bid[0] < ask[0]:
                return removed
            if latest is Side.BID:
                book.set_level(Side.ASK, ask[0], 0)
                removed.append(LevelChange(Side.ASK, ask[0], 0))
            else:
                book.set_level(Side.BID, bid[0], 0)
                removed.append(LevelChange(Side.BID, bid[0], 0))


_HEARTBEAT = Event(0, 0, heartbeat=True)
