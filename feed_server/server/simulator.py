"""The order-level market simulator: pure, deterministic, in simulated time (no I/O, no asyncio).

Per instrument an :class:`InstrumentSimulator` keeps resting limit orders in price-level FIFO queues and the
aggregated :class:`~feed_server.protocol.book.OrderBook` built from them (the server's true book). Each call to
:meth:`InstrumentSimulator.next_event` returns the next sequenced :class:`Event`:

- order events: a limit order arrives near the touch (some inside the spread, some deeper) and rests; a resting
  order is cancelled (fully or partly); a marketable order (market, or a limit that crosses) matches with
  price-time priority, producing trades, and the remainder of a crossing limit order rests. A market order
  never takes more than the top three levels hold, so the book stays two-sided; a side with more than 60
  levels loses its deepest level, one with fewer than 20 gets deeper orders;
- heartbeats: when the gap to the next order event is over 0.5 s of simulated time, a heartbeat (no changes)
  is emitted every 0.5 s in between.

A fair value follows a geometric random walk (relative volatility ``spec.volatility`` per simulated second)
with a slowly changing drift, advanced on a coarse simulated-time grid: at the first order event at least
10 ms (``FAIR_STEP_NS``) after its last move, by one exact step over the whole gap. Bursts (several times the
rate, wider moves) come and go. Inter-arrival times are exponential with mean ``1 / rate`` (shorter during
bursts). Everything is drawn from one ``random.Random`` seeded from ``(seed, instrument_id)``, so the whole
message sequence, sequence numbers and simulated times included, is a pure function of ``(seed, rate,
instrument)``. Sequence 0 is the initial book; the first event is sequence 1. :func:`book_at` rebuilds the true
book at any sequence.

Speed matters here (the simulator is the feed's source, one event per message): the state of a side lives in key
space (bids keyed by ``-price``, asks by ``price``, so on both sides the smallest key is the best level and a
larger key is deeper), as a plain sorted list of keys kept with :mod:`bisect` (20 to 60 of them), a dict of
FIFO queues of resting order sizes and a dict of level totals; the random draws are inlined from
``random.random()`` rather than made through ``random``'s slower helpers.
"""

from __future__ import annotations

import math
import random
from bisect import insort
from collections.abc import Sequence
from typing import NamedTuple

from feed_server.protocol.book import MAX_DEPTH, LevelChange, OrderBook, Side, Trade
from feed_server.protocol.instruments import InstrumentSpec

__all__ = ["FAIR_STEP_NS", "HEARTBEAT_INTERVAL_NS", "Event", "InstrumentSimulator", "book_at"]

HEARTBEAT_INTERVAL_NS = 500_000_000
FAIR_STEP_NS = 10_000_000  # the fair value moves at most once per 10 ms of simulated time
MIN_LEVELS = 20  # below this a side gets more (and deeper) orders
MAX_LEVELS = 60  # above this the deepest level of a side is cancelled
REFILL_LEVELS = 5  # below this an event always adds to that side
_NS = 1_000_000_000
_BURST_RATE = 4.0
_BURST_VOL = 3.0
_NO_LIMIT = math.inf  # the limit key of a market order
_NO_TRADES: tuple[Trade, ...] = ()

_log = math.log
_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__: half the cost, one per change and trade


class Event(NamedTuple):
    """One sequenced message's content: an order event (changes and trades) or a heartbeat.

    A NamedTuple: immutable and several times cheaper to create than a frozen dataclass (one per event)."""

    sequence: int
    offset_ns: int  # simulated time since the start
    changes: Sequence[LevelChange] = ()
    trades: Sequence[Trade] = ()
    heartbeat: bool = False


class _Levels:
    """One side's resting orders in key space: ``key = sign * price`` (bids ``-price``, asks ``price``).

    On both sides the smallest key is the best level and a larger key is a deeper one, and ``sign`` is also the
    direction away from the touch in price (bids lower, asks higher)."""

    __slots__ = ("keys", "other", "queues", "side", "sign", "totals")

    def __init__(self, side: Side, sign: int) -> None:
        self.side = side
        self.sign = sign
        self.keys: list[int] = []  # ascending: best first
        self.queues: dict[int, list[int]] = {}  # key -> the sizes of the resting orders, oldest first
        self.totals: dict[int, int] = {}  # key -> the level's total size
        self.other: _Levels = self


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
        self._random = self._rng.random
        self._bids = _Levels(Side.BID, -1)
        self._asks = _Levels(Side.ASK, 1)
        self._bids.other, self._asks.other = self._asks, self._bids
        self._changes: list[LevelChange] = []  # the current event's level changes (each level at most once)
        self._mean_lots = float(spec.mean_order_lots)
        # The mean time between order events, outside and during bursts.
        self._gap_ns = _NS / rate
        self._burst_gap_ns = _NS / (rate * _BURST_RATE)
        start = spec.start_price_ticks if spec.start_price > 0 else 10_000
        self._fair = float(max(start, 100))
        # The price unit orders are placed in: an eighth of a simulated second's typical move, at least a tick.
        self._scale = max(1.0, self._fair * spec.volatility / 8)
        self._min_fair = 80 * self._scale + 10  # prices stay positive with room for 60 levels
        self._drift = 0.0
        self._fair_time_ns = 0
        self._burst_until_ns = 0
        self._next_burst_ns = self._draw_burst_gap()
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
        sequence = self.sequence = self.sequence + 1
        self.book.sequence = sequence
        now = self._next_order_ns
        if now - self.time_ns > HEARTBEAT_INTERVAL_NS:
            self.time_ns += HEARTBEAT_INTERVAL_NS
            return _new(Event, (sequence, self.time_ns, (), (), True))
        self.time_ns = now
        if now - self._fair_time_ns >= FAIR_STEP_NS:
            self._advance_fair(now)
        changes = self._changes = []
        trades = self._order_event()
        self._next_order_ns = self._draw_next_order_time(now)
        return _new(Event, (sequence, now, changes, trades, False))

    def step_to(self, sequence: int) -> None:
        """Run events until the book is at ``sequence``."""
        next_event = self.next_event
        while self.sequence < sequence:
            next_event()

    # ----------------------------------------------------------------- time and fair value
    def _draw_burst_gap(self) -> int:
        return int(-_log(1.0 - self._random()) * 20 * _NS) + _NS

    def _draw_next_order_time(self, now: int) -> int:
        if now >= self._burst_until_ns and now >= self._next_burst_ns:  # a burst starts (2 s on average)
            self._burst_until_ns = now + int(-_log(1.0 - self._random()) * 2 * _NS)
            self._next_burst_ns = self._burst_until_ns + self._draw_burst_gap()
        mean_gap = self._burst_gap_ns if now < self._burst_until_ns else self._gap_ns
        return now + max(1, int(-_log(1.0 - self._random()) * mean_gap))

    def _advance_fair(self, now: int) -> None:
        """One step of the fair value's random walk, over the simulated time since its last step."""
        dt = (now - self._fair_time_ns) / _NS
        self._fair_time_ns = now
        rng = self._rng
        if rng.random() < dt / 30.0:  # the drift changes every 30 s or so
            self._drift = rng.gauss(0.0, self.spec.volatility / 50)
        vol = self.spec.volatility * (_BURST_VOL if now < self._burst_until_ns else 1.0)
        self._fair *= math.exp(self._drift * dt + vol * math.sqrt(dt) * rng.gauss(0.0, 1.0))
        if self._fair < self._min_fair:
            self._fair = self._min_fair

    # ----------------------------------------------------------------- the book
    def _order_size(self) -> int:
        """An exponential size with mean about ``spec.mean_order_lots``, at least one lot."""
        return int(-_log(1.0 - self._random()) * self._mean_lots) + 1

    def _set_total(self, levels: _Levels, key: int, total: int) -> None:
        """Record a level's new total (0: gone) in the totals, the book and the event's changes.

        The caller keeps ``levels.keys`` and ``levels.queues`` in step."""
        if total:
            levels.totals[key] = total
        else:
            del levels.totals[key]
        side, price = levels.side, levels.sign * key
        self.book.set_level(side, price, total)
        self._changes.append(_new(LevelChange, (side, price, total)))

    def _rest(self, levels: _Levels, price: int, size: int) -> None:
        key = levels.sign * price
        queue = levels.queues.get(key)
        if queue is None:
            levels.queues[key] = [size]
            insort(levels.keys, key)
            self._set_total(levels, key, size)
        else:
            queue.append(size)
            self._set_total(levels, key, levels.totals[key] + size)

    def _match(self, levels: _Levels, size: int, limit_key: float) -> tuple[int, list[Trade]]:
        """Match an incoming order of ``levels``' side against the other side, price-time priority, up to
        ``limit_key`` (in the other side's key space); returns the unfilled size and the trades."""
        aggressor = levels.side
        other = levels.other
        keys, queues, sign = other.keys, other.queues, other.sign
        trades: list[Trade] = []
        while size and keys and keys[0] <= limit_key:
            key = keys[0]
            price = sign * key
            queue = queues[key]
            total = other.totals[key]
            while size and queue:
                fill = queue[0]
                if fill <= size:
                    del queue[0]
                else:
                    fill = size
                    queue[0] -= size
                trades.append(_new(Trade, (price, fill, aggressor)))
                size -= fill
                total -= fill
            if not queue:
                del queues[key]
                del keys[0]
            self._set_total(other, key, total)
        return size, trades

    def _build_initial_book(self) -> None:
        rand = self._random
        fair = round(self._fair)
        unit = max(1, round(self._scale))
        for levels in (self._bids, self._asks):
            sign = levels.sign
            price = fair + sign * max(1, round(self._scale / 2))
            for _ in range(40):
                for _ in range(1 + int(rand() * 3)):
                    self._rest(levels, price, self._order_size())
                price += sign * (1 + int(rand() * unit))
        self._changes = []

    # ----------------------------------------------------------------- order events
    def _order_event(self) -> Sequence[Trade]:
        """Run one order event on the book; returns its trades."""
        bids, asks = self._bids, self._asks
        n_bid, n_ask = len(bids.keys), len(asks.keys)
        if n_bid < REFILL_LEVELS or n_ask < REFILL_LEVELS:
            return self._add_limit(bids if n_bid <= n_ask else asks, deep=True)
        u = self._random()
        if u < 0.62:  # a new limit order, either side alike
            levels = bids if u < 0.31 else asks
            count = len(levels.keys)
            if count > MAX_LEVELS:
                self._cancel_deepest(levels)
                return _NO_TRADES
            return self._add_limit(levels, deep=count < MIN_LEVELS)
        if u < 0.88:  # a cancel, either side alike
            levels = bids if u < 0.75 else asks
            if len(levels.keys) > REFILL_LEVELS + 2:
                self._cancel(levels)
                return _NO_TRADES
            return self._add_limit(levels, deep=True)
        return self._market()

    def _add_limit(self, levels: _Levels, deep: bool) -> Sequence[Trade]:
        """A new limit order on ``levels``' side: deep in the book, inside the spread, at or near the touch or
        further away. When it crosses, it matches first and its remainder rests; returns the trades."""
        rand = self._random
        size = self._order_size()
        if deep:
            units = MIN_LEVELS / 2 + (MAX_LEVELS - MIN_LEVELS / 2) * rand()
        else:
            bid_keys, ask_keys = self._bids.keys, self._asks.keys
            spread = ask_keys[0] + bid_keys[0] if bid_keys and ask_keys else 0
            if spread > 1 and rand() < 0.15:  # inside the spread: it rests, it never crosses
                self._rest(levels, 1 - bid_keys[0] + int(rand() * (spread - 1)), size)
                return _NO_TRADES
            if rand() < 0.65:
                units = float(int(-_log(1.0 - rand()) * 1.5))  # at or near the touch
            else:
                units = 2 + (MAX_LEVELS - 2) * rand()
        price = max(1, round(self._fair + levels.sign * self._scale * (0.5 + units)))
        other = levels.other
        trades: Sequence[Trade] = _NO_TRADES
        if other.keys and other.keys[0] <= other.sign * price:  # marketable: it crosses the other side
            size, trades = self._match(levels, size, other.sign * price)
        if size:
            self._rest(levels, price, size)
        return trades

    def _cancel(self, levels: _Levels) -> None:
        """Cancel a random resting order of a random level, fully (70%) or partly."""
        rand = self._random
        keys = levels.keys
        index = int(rand() * len(keys))
        key = keys[index]
        queue = levels.queues[key]
        position = int(rand() * len(queue))
        size = queue[position]
        if size == 1 or rand() < 0.7:
            removed = size
            del queue[position]
            if not queue:
                del levels.queues[key]
                del keys[index]
        else:
            removed = 1 + int(rand() * (size - 1))
            queue[position] = size - removed
        self._set_total(levels, key, levels.totals[key] - removed)

    def _cancel_deepest(self, levels: _Levels) -> None:
        """Cancel every order of a side's deepest level."""
        key = levels.keys.pop()
        del levels.queues[key]
        self._set_total(levels, key, 0)

    def _market(self) -> Sequence[Trade]:
        rand = self._random
        bids, asks = self._bids, self._asks
        lean = 0.0  # buy more when the book is below the fair value, sell more when above
        if bids.keys and asks.keys:
            mid = (asks.keys[0] - bids.keys[0]) / 2
            lean = max(-0.3, min(0.3, (self._fair - mid) / (4 * self._scale)))
        levels = bids if rand() < 0.5 + lean else asks
        other = levels.other
        # Never sweep more than the top three levels: the book stays two-sided.
        available = sum([other.totals[key] for key in other.keys[:3]])
        size = min(self._order_size() * (1 + int(rand() * 3)), max(1, available))
        return self._match(levels, size, _NO_LIMIT)[1]


def book_at(spec: InstrumentSpec, seed: int, rate: float, sequence: int) -> OrderBook:
    """The server's true (full-depth) book of one instrument at ``sequence``."""
    sim = InstrumentSimulator(spec, seed, rate)
    sim.step_to(sequence)
    return sim.book
