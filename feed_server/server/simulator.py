"""The order-level market simulator: pure, deterministic, in simulated time (no I/O, no asyncio).

Per instrument an :class:`InstrumentSimulator` keeps resting limit orders in price-level FIFO queues and the
aggregated :class:`~feed_server.protocol.book.OrderBook` built from them (the server's true book). Each call to
:meth:`InstrumentSimulator.next_event` returns the next sequenced :class:`Event`:

- order events: a limit order arrives near the touch (some inside the spread, some deeper) and rests; a resting
  order is cancelled (fully or partly); a marketable order (market, or a limit that crosses) matches with
  price-time priority, producing trades, and the remainder of a crossing limit order rests;
- heartbeats: when the gap to the next order event is over 0.5 s of simulated time, a heartbeat (no changes)
  is emitted every 0.5 s in between.

A fair value follows a geometric random walk (relative volatility ``spec.volatility`` per simulated second)
with a slowly changing drift, and bursts (several times the rate, wider moves) come and go. Inter-arrival
times are exponential with mean ``1 / rate`` (shorter during bursts). Everything is drawn from one
``random.Random`` seeded from ``(seed, instrument_id)``, so the whole message sequence, sequence numbers and
simulated times included, is a pure function of ``(seed, rate, instrument)``. Sequence 0 is the initial book;
the first event is sequence 1. :func:`book_at` rebuilds the true book at any sequence.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

from sortedcontainers import SortedDict

from feed_server.protocol.book import MAX_DEPTH, LevelChange, OrderBook, Side, Trade
from feed_server.protocol.instruments import InstrumentSpec

__all__ = ["HEARTBEAT_INTERVAL_NS", "Event", "InstrumentSimulator", "book_at"]

HEARTBEAT_INTERVAL_NS = 500_000_000
MIN_LEVELS = 20  # below this a side gets more (and deeper) orders
MAX_LEVELS = 60  # above this the deepest level of a side is cancelled
REFILL_LEVELS = 5  # below this an event always adds to that side
_NS = 1_000_000_000
_BURST_RATE = 4.0
_BURST_VOL = 3.0


class Event(NamedTuple):
    """One sequenced message's content: an order event (changes and trades) or a heartbeat.

    A NamedTuple: immutable and several times cheaper to create than a frozen dataclass (one per event)."""

    sequence: int
    offset_ns: int  # simulated time since the start
    changes: Sequence[LevelChange] = ()
    trades: Sequence[Trade] = ()
    heartbeat: bool = False


class _Order:
    __slots__ = ("order_id", "size")

    def __init__(self, order_id: int, size: int) -> None:
        self.order_id = order_id
        self.size = size


class InstrumentSimulator:
    """The order-level simulation of one instrument (see the module docstring)."""

    def __init__(self, spec: InstrumentSpec, seed: int, rate: float) -> None:
        if rate <= 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a positive number, got {rate}")
        self.spec = spec
        self.rate = rate
        self.instrument_id = spec.instrument_id
        self.book = OrderBook(spec.instrument_id, MAX_DEPTH)
        self.book.sequence = 0
        self.sequence = 0
        self.time_ns = 0  # simulated time of the last event (or heartbeat)
        self._rng = random.Random(f"{seed}:{spec.instrument_id}")
        # Per side: key -> FIFO of orders; bids keyed by -price so that index 0 is always the best level.
        self._queues: dict[Side, SortedDict] = {Side.BID: SortedDict(), Side.ASK: SortedDict()}
        self._keys = {side: queues.keys() for side, queues in self._queues.items()}  # live sorted views
        self._totals: dict[Side, dict[int, int]] = {Side.BID: {}, Side.ASK: {}}
        self._next_order_id = 1
        start = spec.start_price_ticks if spec.start_price > 0 else 10_000
        self._fair = float(max(start, 100))
        # The price unit orders are placed in: an eighth of a simulated second's typical move, at least a tick.
        self._scale = max(1.0, self._fair * spec.volatility / 8)
        self._drift = 0.0
        self._fair_time_ns = 0
        self._burst_until_ns = 0
        self._next_burst_ns = self._draw_burst_gap()
        self._changes: dict[tuple[Side, int], int] = {}
        self._build_initial_book()
        self._next_order_ns = self._draw_next_order_time(0)

    # ----------------------------------------------------------------- public
    @property
    def next_offset_ns(self) -> int:
        """Simulated time of the next message (event or heartbeat), without producing it."""
        if self._next_order_ns - self.time_ns > HEARTBEAT_INTERVAL_NS:
            return self.time_ns + HEARTBEAT_INTERVAL_NS
        return self._next_order_ns

    def next_event(self) -> Event:
        """Produce the next message's event, apply it to ``book`` and advance the sequence."""
        self.sequence += 1
        self.book.sequence = self.sequence
        if self._next_order_ns - self.time_ns > HEARTBEAT_INTERVAL_NS:
            self.time_ns += HEARTBEAT_INTERVAL_NS
            return Event(self.sequence, self.time_ns, heartbeat=True)
        now = self._next_order_ns
        self.time_ns = now
        self._advance_fair(now)
        self._changes = {}
        trades: list[Trade] = []
        self._order_event(trades)
        changes = [LevelChange(side, price, size) for (side, price), size in self._changes.items()]
        self._next_order_ns = self._draw_next_order_time(now)
        return Event(self.sequence, now, changes, trades)

    def step_to(self, sequence: int) -> None:
        """Run events until the book is at ``sequence``."""
        while self.sequence < sequence:
            self.next_event()

    # ----------------------------------------------------------------- time and fair value
    def _draw_burst_gap(self) -> int:
        return int(self._rng.expovariate(1 / 20.0) * _NS) + _NS

    def _draw_next_order_time(self, now: int) -> int:
        if now >= self._burst_until_ns and now >= self._next_burst_ns:
            self._burst_until_ns = now + int(self._rng.expovariate(1 / 2.0) * _NS)
            self._next_burst_ns = self._burst_until_ns + self._draw_burst_gap()
        rate = self.rate * (_BURST_RATE if now < self._burst_until_ns else 1.0)
        return now + max(1, int(self._rng.expovariate(rate) * _NS))

    def _advance_fair(self, now: int) -> None:
        dt = (now - self._fair_time_ns) / _NS
        self._fair_time_ns = now
        if dt <= 0:
            return
        rng = self._rng
        if rng.random() < min(1.0, dt / 30.0):  # the drift changes every 30 s or so
            self._drift = rng.gauss(0.0, self.spec.volatility / 50)
        vol = self.spec.volatility * (_BURST_VOL if now < self._burst_until_ns else 1.0)
        self._fair *= math.exp(self._drift * dt + vol * math.sqrt(dt) * rng.gauss(0.0, 1.0))
        self._fair = max(self._fair, 80 * self._scale + 10)  # prices stay positive with room for 60 levels

    def _mid(self) -> float | None:
        bid, ask = self._best(Side.BID), self._best(Side.ASK)
        if bid is None or ask is None:
            return None
        return (bid + ask) / 2

    # ----------------------------------------------------------------- the book
    def _best(self, side: Side) -> int | None:
        keys = self._keys[side]
        if not keys:
            return None
        key: int = keys[0]
        return -key if side is Side.BID else key

    def _set_total(self, side: Side, price: int, size: int) -> None:
        totals = self._totals[side]
        if size:
            totals[price] = size
        else:
            totals.pop(price, None)
        self.book.set_level(side, price, size)
        self._changes[(side, price)] = size

    def _rest(self, side: Side, price: int, size: int) -> None:
        key = -price if side is Side.BID else price
        queues = self._queues[side]
        queue = queues.get(key)
        if queue is None:
            queue = queues[key] = deque()
        queue.append(_Order(self._next_order_id, size))
        self._next_order_id += 1
        self._set_total(side, price, self._totals[side].get(price, 0) + size)

    def _match(self, side: Side, size: int, limit: int | None, trades: list[Trade]) -> int:
        """Match an incoming order of ``side`` against the other side; returns the unfilled size."""
        other = Side.ASK if side is Side.BID else Side.BID
        queues = self._queues[other]
        keys = self._keys[other]
        totals = self._totals[other]
        while size > 0 and queues:
            key = keys[0]
            price = -key if other is Side.BID else key
            if limit is not None and (price > limit if side is Side.BID else price < limit):
                break
            queue: deque[_Order] = queues[key]
            total = totals[price]
            while size > 0 and queue:
                order = queue[0]
                fill = min(size, order.size)
                trades.append(Trade(price, fill, side))
                order.size -= fill
                size -= fill
                total -= fill
                if order.size == 0:
                    queue.popleft()
            if not queue:
                del queues[key]
            self._set_total(other, price, total)
        return size

    def _order_size(self) -> int:
        return max(1, int(self._rng.expovariate(1 / self.spec.mean_order_lots)) + 1)

    def _build_initial_book(self) -> None:
        rng = self._rng
        fair = round(self._fair)
        unit = max(1, round(self._scale))
        for side, sign in ((Side.BID, -1), (Side.ASK, 1)):
            price = fair + sign * max(1, round(self._scale / 2))
            for _ in range(40):
                for _ in range(rng.randint(1, 3)):
                    self._rest(side, price, self._order_size())
                price += sign * rng.randint(1, unit)
        self._changes = {}

    # ----------------------------------------------------------------- order events
    def _order_event(self, trades: list[Trade]) -> None:
        rng = self._rng
        n_bid, n_ask = len(self._queues[Side.BID]), len(self._queues[Side.ASK])
        if n_bid < REFILL_LEVELS or n_ask < REFILL_LEVELS:
            self._add_limit(Side.BID if n_bid <= n_ask else Side.ASK, trades, deep=True)
            return
        u = rng.random()
        if u < 0.62:
            side = Side.BID if rng.random() < 0.5 else Side.ASK
            count = n_bid if side is Side.BID else n_ask
            if count > MAX_LEVELS:
                self._cancel_deepest(side)
            else:
                self._add_limit(side, trades, deep=count < MIN_LEVELS)
        elif u < 0.88:
            side = Side.BID if rng.random() < 0.5 else Side.ASK
            count = n_bid if side is Side.BID else n_ask
            if count > REFILL_LEVELS + 2:
                self._cancel(side)
            else:
                self._add_limit(side, trades, deep=True)
        else:
            self._market(trades)

    def _add_limit(self, side: Side, trades: list[Trade], deep: bool) -> None:
        rng = self._rng
        best_bid, best_ask = self._best(Side.BID), self._best(Side.ASK)
        size = self._order_size()
        sign = -1 if side is Side.BID else 1
        if deep:
            units = rng.uniform(MIN_LEVELS / 2, MAX_LEVELS)
        elif best_bid is not None and best_ask is not None and best_ask - best_bid > 1 and rng.random() < 0.15:
            units = -1.0  # inside the spread
        elif rng.random() < 0.65:
            units = float(int(rng.expovariate(1 / 1.5)))  # at or near the touch
        else:
            units = rng.uniform(2, MAX_LEVELS)
        if units < 0 and best_bid is not None and best_ask is not None:
            price = rng.randint(best_bid + 1, best_ask - 1)
        else:
            price = max(1, round(self._fair + sign * self._scale * (0.5 + units)))
        if side is Side.BID and best_ask is not None and price >= best_ask:
            size = self._match(side, size, price, trades)
        elif side is Side.ASK and best_bid is not None and price <= best_bid:
            size = self._match(side, size, price, trades)
        if size > 0:
            self._rest(side, price, size)

    def _cancel(self, side: Side) -> None:
        rng = self._rng
        queues = self._queues[side]
        key = self._keys[side][rng.randrange(len(queues))]
        self._cancel_at(side, key, full=rng.random() < 0.7)

    def _cancel_deepest(self, side: Side) -> None:
        queues = self._queues[side]
        key = self._keys[side][-1]
        while key in queues:
            self._cancel_at(side, key, full=True)

    def _cancel_at(self, side: Side, key: int, full: bool) -> None:
        rng = self._rng
        queue: deque[_Order] = self._queues[side][key]
        price = -key if side is Side.BID else key
        position = rng.randrange(len(queue))
        order = queue[position]
        if full or order.size == 1:
            removed = order.size
            del queue[position]
        else:
            removed = rng.randint(1, order.size - 1)
            order.size -= removed
        if not queue:
            del self._queues[side][key]
        self._set_total(side, price, self._totals[side][price] - removed)

    def _market(self, trades: list[Trade]) -> None:
        rng = self._rng
        mid = self._mid()
        lean = 0.0 if mid is None else max(-0.3, min(0.3, (self._fair - mid) / (4 * self._scale)))
        side = Side.BID if rng.random() < 0.5 + lean else Side.ASK
        other = Side.ASK if side is Side.BID else Side.BID
        totals = self._totals[other]
        # Never sweep more than the top three levels: the book stays two-sided.
        available = 0
        for key in self._keys[other][:3]:
            available += totals[-key if other is Side.BID else key]
        size = min(self._order_size() * rng.randint(1, 3), max(1, available))
        self._match(side, size, None, trades)


def book_at(spec: InstrumentSpec, seed: int, rate: float, sequence: int) -> OrderBook:
    """The server's true (full-depth) book of one instrument at ``sequence``."""
    sim = InstrumentSimulator(spec, seed, rate)
    sim.step_to(sequence)
    return sim.book
