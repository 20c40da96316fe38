"""What the dashboard remembers of each instrument's recent past: its mid price, its trades and its resting sizes.

One :class:`MarketHistory` per app, fed by the bridge's books: one sampler task (every ``SAMPLE_INTERVAL``
seconds, shared by every tab) records each instrument's mid price and top ``HEATMAP_LEVELS`` levels per side, and
a book listener records every trade as it is applied (so none is lost between samples), added into one point per
second, price and aggressor side. Everything is bounded: the mid over ``PRICE_WINDOW`` seconds, the trade points
within ``PRICE_WINDOW`` (at most the latest ``MAX_TRADES``), the depth samples over ``HEATMAP_WINDOW`` seconds.
A page reads :meth:`MarketHistory.get` and redraws when the instrument's
``version`` moved. Times are the dashboard's wall clock (ns since the epoch, UTC) when sampled or received.

A stale book is never sampled as live: its sample has no mid and no levels (a gap). A feed restart (a new
session) leaves a gap too; should the instrument's spec change (another tick or lot size), its history is
dropped, since old ticks would mean other prices.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from dashboard.bridge import FeedBridge
from dashboard.owned_task import OwnedTask
from feed_server.client.sync import InstrumentBook
from feed_server.protocol.book import Level, Side, Trade
from feed_server.protocol.instruments import InstrumentSpec

__all__ = [
    "HEATMAP_LEVELS",
    "HEATMAP_WINDOW",
    "MAX_TRADES",
    "PRICE_WINDOW",
    "SAMPLE_INTERVAL",
    "DepthSample",
    "InstrumentHistory",
    "MarketHistory",
    "TradePoint",
]

log = logging.getLogger(__name__)

TASK_NAME = "dashboard market history sampler"
SAMPLE_INTERVAL = 0.5  # seconds between two samples of every instrument (2 Hz)
PRICE_WINDOW = 300.0  # seconds of mid prices and trades kept
HEATMAP_WINDOW = 120.0  # seconds of depth samples kept
HEATMAP_LEVELS = 25  # levels per side in a depth sample
MAX_TRADES = 20_000  # trade points kept per instrument (the latest), within PRICE_WINDOW
_NS = 1_000_000_000


class TradePoint(NamedTuple):
    """The trades of one second at one price and aggressor side, as the history keeps them: the second (its start,
    by the dashboard's clock when they were applied), price in ticks, their total size in lots, aggressor."""

    time_ns: int
    price: int
    size: int
    aggressor: Side


class DepthSample(NamedTuple):
    """One sample of a book: time, mid in ticks (None: not live, a gap), and its top levels (bids then asks)."""

    time_ns: int
    mid: float | None
    levels: tuple[Level, ...]


@dataclass(eq=False, slots=True)
class InstrumentHistory:
    """One instrument's recent past, oldest first. Read it; only :class:`MarketHistory` writes it.

    ``version`` goes up with every new sample; ``mids`` holds ``(time_ns, mid_ticks or None)``; ``trades`` one
    point per second, price and aggressor (their sizes added), so five minutes of a busy instrument stay small.
    """

    spec: InstrumentSpec
    mids: deque[tuple[int, float | None]] = field(default_factory=deque)
    trades: deque[TradePoint] = field(default_factory=lambda: deque(maxlen=MAX_TRADES))
    depth: deque[DepthSample] = field(default_factory=deque)
    version: int = 0
    session_id: str | None = None  # the feed session the last live sample came from
    trades_added: int = 0  # trade points ever appended (with len(trades): where a point of the open second is)
    open_second: int = -1  # the second whose trade points may still grow
    open_points: dict[tuple[int, Side], int] = field(default_factory=dict)  # (price, aggressor) -> trades_added at it

    def add_trade(self, second: int, trade: Trade) -> None:
        """Add one trade applied in ``second`` (seconds since the epoch) to its point."""
        trades = self.trades
        if second != self.open_second:
            self.open_second = second
            self.open_points.clear()
        key = (trade.price, trade.aggressor)
        at = self.open_points.get(key)
        index = -1 if at is None else at - self.trades_added + len(trades)
        if index >= 0:  # (a point the cap already dropped is started again)
            point = trades[index]
            trades[index] = point._replace(size=point.size + trade.size)
            return
        trades.append(TradePoint(second * _NS, trade.price, trade.size, trade.aggressor))
        self.open_points[key] = self.trades_added
        self.trades_added += 1


class MarketHistory:
    """Samples every book of ``bridge`` at a fixed rate and keeps their recent past. See the module docstring."""

    def __init__(
        self,
        bridge: FeedBridge,
        *,
        sample_interval: float = SAMPLE_INTERVAL,
        price_window: float = PRICE_WINDOW,
        heatmap_window: float = HEATMAP_WINDOW,
        levels: int = HEATMAP_LEVELS,
        max_trades: int = MAX_TRADES,
    ) -> None:
        self.bridge = bridge
        self.sample_interval = sample_interval
        self.price_window_ns = int(price_window * 1e9)
        self.heatmap_window_ns = int(heatmap_window * 1e9)
        self.levels = levels
        self.max_trades = max_trades
        self._histories: dict[str, InstrumentHistory] = {}
        self._task = OwnedTask(self._run, TASK_NAME)
        bridge.subscriber.add_listener(self._on_book)

    # ----------------------------------------------------------------- reading
    def get(self, instrument_id: str) -> InstrumentHistory | None:
        """The instrument's history, or None before its first sample or trade."""
        return self._histories.get(instrument_id)

    def instrument_ids(self) -> list[str]:
        return list(self._histories)

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the one sampler task (idempotent)."""
        self._task.start()

    async def stop(self) -> None:
        """Cancel the sampler task and wait for it to end (bounded)."""
        await self._task.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                self.sample()
            except Exception:  # a bug: logged, and the next sample is tried (CancelledError is not an Exception)
                log.exception("sampling the market history failed")
            next_at += self.sample_interval
            now = loop.time()
            if next_at < now:  # fell behind (a busy loop): skip the missed samples rather than catch up in a burst
                next_at = now + self.sample_interval
            await asyncio.sleep(next_at - now)

    # ----------------------------------------------------------------- writing
    def sample(self, now_ns: int | None = None) -> None:
        """Take one sample of every book (the sampler calls this every ``sample_interval`` seconds)."""
        now = time.time_ns() if now_ns is None else now_ns
        books = self.bridge.subscriber.books
        for gone in [iid for iid in self._histories if iid not in books]:
            del self._histories[gone]  # a restarted feed no longer lists it
        for instrument_id, ibook in books.items():
            self.sample_book(instrument_id, ibook, now, ibook.session_id)

    def sample_book(self, instrument_id: str, ibook: InstrumentBook, now_ns: int, session_id: str | None) -> None:
        """Take one sample of one book at ``now_ns`` (from the feed session ``session_id``)."""
        history = self._history(instrument_id, ibook.spec)
        book = ibook.book
        live = not ibook.stale and book.sequence is not None
        if live and history.session_id is not None and session_id != history.session_id:
            self._gap(history, now_ns - 1)  # a new session: never draw a line from the old one's prices
        mid: float | None = None
        levels: tuple[Level, ...] = ()
        if live:
            history.session_id = session_id
            mid = book.mid()
            levels = (*book.bids(self.levels), *book.asks(self.levels))
        history.mids.append((now_ns, mid))
        history.depth.append(DepthSample(now_ns, mid, levels))
        self._trim(history, now_ns)
        history.version += 1

    def add_trades(self, instrument_id: str, trades: Sequence[Trade], now_ns: int | None = None) -> None:
        """Record trades just applied to the instrument's book (the book listener calls this)."""
        ibook = self.bridge.subscriber.books.get(instrument_id)
        if ibook is None:
            return
        history = self._history(instrument_id, ibook.spec)
        second = (time.time_ns() if now_ns is None else now_ns) // _NS
        for trade in trades:
            history.add_trade(second, trade)

    def _on_book(self, instrument_id: str, trades: Sequence[Trade]) -> None:
        if trades:
            self.add_trades(instrument_id, trades)

    def _history(self, instrument_id: str, spec: InstrumentSpec) -> InstrumentHistory:
        history = self._histories.get(instrument_id)
        if history is None or (history.spec.tick_size, history.spec.lot_size) != (spec.tick_size, spec.lot_size):
            if history is not None:
                log.info("%s has a new tick or lot size: its history starts again", instrument_id)
            history = self._histories[instrument_id] = InstrumentHistory(
                spec, trades=deque(maxlen=self.max_trades), version=history.version + 1 if history else 0
            )
        else:
            history.spec = spec
        return history

    @staticmethod
    def _gap(history: InstrumentHistory, at_ns: int) -> None:
        history.mids.append((at_ns, None))
        history.depth.append(DepthSample(at_ns, None, ()))

    def _trim(self, history: InstrumentHistory, now_ns: int) -> None:
        price_from, depth_from = now_ns - self.price_window_ns, now_ns - self.heatmap_window_ns
        mids, trades, depth = history.mids, history.trades, history.depth
        while mids and mids[0][0] < price_from:
            mids.popleft()
        while trades and trades[0].time_ns < price_from:
            trades.popleft()
        while depth and depth[0].time_ns < depth_from:
            depth.popleft()

