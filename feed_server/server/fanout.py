"""The publisher: runs the simulators against the wall clock and fans their messages out to subscribers.

One engine task paces every :class:`~feed_server.server.simulator.InstrumentSimulator`. It runs the events of all
instruments in simulated-time order (a heap on each simulator's next due time), so no instrument is favoured,
and publishes each one as soon as it is due (``event_time_ns`` = the hub's start wall time + the event's
simulated offset): between events it sleeps until the next one is due. Event loop timers fire up to a
millisecond late (epoll's resolution), so the engine wakes a millisecond early and waits the last fraction with
a short blocking sleep, after the streams have sent what was published: an event leaves the hub a fraction of a
millisecond after its event time. For each event it builds one
``pb.BookMessage`` per depth currently subscribed on that instrument (the view's changes plus the event's
trades, or a heartbeat), computes each checksum once, and hands the same message object to every subscriber at
that depth. An event that leaves a depth's view unchanged still gives it an Update with no changes, so
sequences are contiguous and identical for every subscriber. Nothing is built for an instrument nobody
subscribes to.

Fairness and responsiveness. The engine works in slices of at most ``SLICE_S`` (wall clock) and always returns to
the event loop between slices, so the gRPC streams keep sending and signals are handled promptly even when the
simulation cannot keep up with ``--rate``. When it is behind it goes on at once (no sleep) after each slice.

Falling behind. The simulated clock is never bent: every event is run, in order, with its simulated time. When
the engine falls more than ``MAX_LAG_S`` behind the wall clock, the mapping of simulated time to wall time is
moved on by the excess (``start_ns`` grows), and a warning is logged at most every 10 s: the lag consumers see
in ``event_time_ns`` stays bounded, and the feed simply runs slower than real time, with exactly the same
messages (only ``event_time_ns`` shifts). Per instrument, ``event_time_ns`` never goes backwards.

Idle. With no subscriber the engine runs the simulation in coarse steps (every ``idle_step_s``) so a new
subscriber still gets a live book; nothing is encoded. A new subscription wakes the engine at once.

Slow subscribers. Each :class:`Subscription` has a bounded buffer (``max_backlog`` messages). The publishing
path never waits for a subscriber. When a subscriber's buffer is full, its whole backlog is dropped and
replaced by a fresh ``SNAPSHOT_REASON_RESYNC`` snapshot of each of its instruments, taken at that moment, so
its stream stays consistent: what follows the snapshots continues from their sequence numbers. The subscriber
is never disconnected for being slow; ``Subscription.resyncs`` counts how often this happened to it.

A subscription's consumer reads everything buffered at once (``await subscription.next_batch()`` or
``async for batch in subscription``), at most ``max_batch`` messages per batch, so one gRPC stream item
carries many messages under load.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
import zlib
from collections import deque
from collections.abc import Iterable, Sequence

from feed_server.protocol.book import (
    CHECKSUM_LEVELS,
    DEFAULT_DEPTH,
    DepthView,
    LevelChange,
    OrderBook,
    Side,
    Trade,
    compute_checksum,
)
from feed_server.protocol.errors import BadRequest, UnknownInstrument
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.wire import heartbeat_message, snapshot_message
from feed_server.server.simulator import Event, InstrumentSimulator

__all__ = [
    "DEFAULT_IDLE_STEP_S",
    "DEFAULT_MAX_BACKLOG",
    "DEFAULT_MAX_BATCH",
    "MAX_LAG_S",
    "SLICE_S",
    "Hub",
    "Subscription",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BACKLOG = 50_000
DEFAULT_MAX_BATCH = 5_000
DEFAULT_IDLE_STEP_S = 0.1  # with no subscriber: how often the engine runs the simulation up to now
SLICE_S = 0.005  # the most the engine works before it returns to the event loop
MAX_LAG_S = 0.25  # behind the wall clock by more than this, the simulated-to-wall-time mapping moves on
_MAX_SLEEP_NS = 100_000_000  # the longest the engine sleeps with subscribers (the next event is usually sooner)
_TIMER_SLACK_NS = 1_000_000  # how late an event loop timer may fire (epoll's millisecond resolution)
_LAG_WARNING_INTERVAL_NS = 10_000_000_000


class Subscription:
    """One subscriber's registration and bounded buffer. Created by :meth:`Hub.subscribe`."""

    def __init__(
        self, sub_id: int, instrument_ids: Sequence[str], depth: int, max_backlog: int, max_batch: int
    ) -> None:
        self.sub_id = sub_id
        self.instrument_ids = tuple(instrument_ids)
        self.depth = depth
        self.max_backlog = max_backlog
        self.max_batch = max_batch
        self.resyncs = 0
        self.delivered = 0
        self.closed = False
        self._buffer: deque[pb.BookMessage] = deque()
        self._wakeup = asyncio.Event()

    def __repr__(self) -> str:
        return f"Subscription({self.sub_id}, {len(self.instrument_ids)} instruments, depth={self.depth})"

    @property
    def backlog(self) -> int:
        """Messages buffered and not yet taken by the consumer."""
        return len(self._buffer)

    async def next_batch(self) -> list[pb.BookMessage] | None:
        """Everything buffered (up to ``max_batch`` messages), waiting for something; None once closed."""
        while not self._buffer:
            if self.closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        return self.take_nowait()

    def take_nowait(self) -> list[pb.BookMessage]:
        """Everything buffered now (up to ``max_batch`` messages), without waiting; maybe empty."""
        buffer = self._buffer
        if len(buffer) <= self.max_batch:
            batch = list(buffer)
            buffer.clear()
        else:
            batch = [buffer.popleft() for _ in range(self.max_batch)]
        self.delivered += len(batch)
        return batch

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> list[pb.BookMessage]:
        batch = await self.next_batch()
        if batch is None:
            raise StopAsyncIteration
        return batch

    def _close(self) -> None:
        self.closed = True
        self._wakeup.set()


class _Checksum:
    """One instrument's checksum over its top ``levels`` levels per side (see feed_server.protocol.book).

    Each side's part of the canonical text is kept and rebuilt only when an event reaches that side's checksummed
    levels (most events touch one side): CRC32 is chained, crc32(asks, crc32(bids + "|")) == crc32(whole text).
    """

    __slots__ = ("ask_limit", "ask_text", "bid_crc", "bid_limit", "levels", "value")

    def __init__(self, levels: int) -> None:
        self.levels = levels
        self.reset()

    def reset(self) -> None:
        """Forget the cached parts (the book changed while nobody kept them up to date)."""
        self.value = -1
        self.bid_crc = 0  # CRC32 of the bid part and the "|"
        self.ask_text = b""
        self.bid_limit: int | None = None  # price of the levels-th best bid; None: any bid change counts
        self.ask_limit: int | None = None

    def get(self, book: OrderBook, changes: Sequence[LevelChange]) -> int:
        bids_reached = asks_reached = self.value < 0
        bid_limit, ask_limit = self.bid_limit, self.ask_limit
        for change in changes:
            if change.side is Side.BID:
                bids_reached = bids_reached or bid_limit is None or change.price >= bid_limit
            else:
                asks_reached = asks_reached or ask_limit is None or change.price <= ask_limit
        if bids_reached:
            bids = book.bids(self.levels)
            text = ",".join([f"{p}:{s}" for p, s in bids]) + "|"
            self.bid_crc = zlib.crc32(text.encode("ascii"))
            self.bid_limit = bids[-1][0] if len(bids) == self.levels else None
        if asks_reached:
            asks = book.asks(self.levels)
            self.ask_text = ",".join([f"{p}:{s}" for p, s in asks]).encode("ascii")
            self.ask_limit = asks[-1][0] if len(asks) == self.levels else None
        if bids_reached or asks_reached:
            self.value = zlib.crc32(self.ask_text, self.bid_crc)
        return self.value


def _update_pb(
    instrument_id: str,
    sequence: int,
    event_time_ns: int,
    checksum: int,
    changes: Sequence[LevelChange],
    trades: Sequence[Trade],
) -> pb.BookMessage:
    """The same message as wire.update_message, built about twice as fast (the engine's hot path)."""
    message = pb.BookMessage(
        instrument_id=instrument_id, sequence=sequence, event_time_ns=event_time_ns, checksum=checksum
    )
    update = message.update
    if not changes and not trades:
        update.SetInParent()  # an empty Update is still an update (adding a change or trade sets it too)
        return message
    add_change = update.changes.add
    for c in changes:
        add_change(side=c.side, price_ticks=c.price, size_lots=c.size)  # type: ignore[arg-type]
    if trades:
        add_trade = update.trades.add
        for t in trades:
            add_trade(price_ticks=t.price, size_lots=t.size, aggressor=t.aggressor)  # type: ignore[arg-type]
    return message


class _Group:
    """The subscribers of one (instrument, depth) and the depth view their messages are built from."""

    __slots__ = ("subscribers", "view")

    def __init__(self, view: DepthView) -> None:
        self.view = view
        self.subscribers: list[Subscription] = []


class Hub:
    """Runs the simulators and publishes their messages (see the module docstring)."""

    def __init__(
        self,
        instruments: Iterable[InstrumentSpec],
        *,
        seed: int = 1,
        rate: float = 50.0,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        max_batch: int = DEFAULT_MAX_BATCH,
        idle_step_s: float = DEFAULT_IDLE_STEP_S,
    ) -> None:
        self.specs: dict[str, InstrumentSpec] = {spec.instrument_id: spec for spec in instruments}
        if not self.specs:
            raise ValueError("a hub needs at least one instrument")
        if max_backlog < 1 or max_batch < 1 or idle_step_s <= 0:
            raise ValueError("max_backlog, max_batch and idle_step_s must be positive")
        self.seed = seed
        self.rate = rate
        # A resync puts one snapshot per instrument in the buffer: the backlog must hold at least that.
        self.max_backlog = max(max_backlog, 2 * len(self.specs))
        self.max_batch = max_batch
        self.idle_step_s = idle_step_s
        self.simulators: dict[str, InstrumentSimulator] = {
            iid: InstrumentSimulator(spec, seed, rate) for iid, spec in self.specs.items()
        }
        self.events = 0  # events and heartbeats run so far, all instruments
        self._groups: dict[str, dict[int, _Group]] = {iid: {} for iid in self.specs}
        self._checksums: dict[str, dict[int, _Checksum]] = {
            iid: {n: _Checksum(n) for n in range(1, CHECKSUM_LEVELS + 1)} for iid in self.specs
        }
        # The simulators by next due time (simulated ns), ties in instrument order: the engine's run order.
        self._due: list[tuple[int, int, InstrumentSimulator]] = [
            (sim.next_offset_ns, index, sim) for index, sim in enumerate(self.simulators.values())
        ]
        heapq.heapify(self._due)
        self._subscriptions: dict[int, Subscription] = {}
        self._next_sub_id = 1
        self._start_ns = time.time_ns()
        self._start_mono_ns = time.monotonic_ns()
        self._engine: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()  # wakes an idle engine when the first subscriber arrives
        self.shifted_ns = 0  # how far the simulated-to-wall-time mapping moved on because the engine fell behind
        self._last_lag_warning_ns = 0

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the engine task (in the running event loop). Simulated time 0 is now."""
        if self._engine is not None:
            raise RuntimeError("hub already started")
        self._start_ns = time.time_ns()
        self._start_mono_ns = time.monotonic_ns()
        self._engine = asyncio.create_task(self._run(), name="feed-hub-engine")
        self._engine.add_done_callback(self._engine_done)

    @staticmethod
    def _engine_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("the hub engine failed; no more events will be published", exc_info=task.exception())

    async def close(self) -> None:
        """Stop the engine and end every subscription (their consumers get None / StopAsyncIteration)."""
        for sub in list(self._subscriptions.values()):
            self.unsubscribe(sub)
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.cancel()
            await asyncio.wait([engine])  # our own cancellation still propagates

    @property
    def start_ns(self) -> int:
        """Wall time (ns since the epoch) of simulated time 0: event_time_ns = start_ns + offset_ns.

        It only changes (grows) when the engine falls more than MAX_LAG_S behind the wall clock."""
        return self._start_ns

    @property
    def running(self) -> bool:
        return self._engine is not None and not self._engine.done()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    # ----------------------------------------------------------------- subscribers
    def subscribe(self, instrument_ids: Sequence[str] | None, depth: int = DEFAULT_DEPTH) -> Subscription:
        """Register a subscriber; its buffer starts with an INITIAL snapshot of each instrument.

        Registration and the snapshots happen in one synchronous step, so nothing is missed or duplicated.
        ``instrument_ids`` empty or None means every instrument. Raises UnknownInstrument or BadRequest.
        """
        ids = list(instrument_ids) if instrument_ids else list(self.specs)
        for iid in ids:
            if iid not in self.specs:
                raise UnknownInstrument(f"unknown instrument id {iid!r}")
        if len(set(ids)) != len(ids):
            raise BadRequest("duplicate instrument ids")
        if not 1 <= depth <= 100:
            raise BadRequest(f"depth {depth} out of range: 1..100")
        sub = Subscription(self._next_sub_id, ids, depth, self.max_backlog, self.max_batch)
        self._next_sub_id += 1
        for iid in ids:
            groups = self._groups[iid]
            group = groups.get(depth)
            if group is None:
                group = groups[depth] = _Group(DepthView(self.simulators[iid].book, depth))
                # The cached checksum was not kept up to date while nobody used it.
                self._checksums[iid][min(CHECKSUM_LEVELS, depth)].reset()
            group.subscribers.append(sub)
            sub._buffer.append(self._snapshot(iid, depth, pb.SNAPSHOT_REASON_INITIAL))
        self._subscriptions[sub.sub_id] = sub
        sub._wakeup.set()
        self._subscribed.set()
        logger.debug("subscribed %r", sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Remove a subscriber (idempotent) and end its iteration."""
        if self._subscriptions.pop(sub.sub_id, None) is None:
            sub._close()
            return
        for iid in sub.instrument_ids:
            groups = self._groups[iid]
            group = groups.get(sub.depth)
            if group is None:
                continue
            group.subscribers.remove(sub)
            if not group.subscribers:
                del groups[sub.depth]
        sub._close()
        logger.debug("unsubscribed %r (resyncs %d)", sub, sub.resyncs)

    def get_snapshot(self, instrument_id: str, depth: int = DEFAULT_DEPTH) -> pb.BookMessage:
        """A REQUEST snapshot of one instrument's book now, at ``depth``."""
        if instrument_id not in self.specs:
            raise UnknownInstrument(f"unknown instrument id {instrument_id!r}")
        if not 1 <= depth <= 100:
            raise BadRequest(f"depth {depth} out of range: 1..100")
        return self._snapshot(instrument_id, depth, pb.SNAPSHOT_REASON_REQUEST)

    def _snapshot(self, instrument_id: str, depth: int, reason: int) -> pb.BookMessage:
        sim = self.simulators[instrument_id]
        book = sim.book
        n = min(CHECKSUM_LEVELS, depth)
        checksum = compute_checksum(book.bids(n), book.asks(n))
        return snapshot_message(
            instrument_id,
            sim.sequence,
            self._start_ns + sim.time_ns,
            checksum,
            book.bids(depth),
            book.asks(depth),
            reason,
        )

    def _resync(self, sub: Subscription) -> None:
        """Drop a full subscriber's backlog and replace it with fresh snapshots."""
        sub._buffer.clear()
        for iid in sub.instrument_ids:
            sub._buffer.append(self._snapshot(iid, sub.depth, pb.SNAPSHOT_REASON_RESYNC))
        sub.resyncs += 1
        logger.info(
            "subscriber %d fell %d messages behind: backlog dropped, resync snapshots sent (resync #%d)",
            sub.sub_id,
            sub.max_backlog,
            sub.resyncs,
        )

    # ----------------------------------------------------------------- the engine
    async def _run(self) -> None:
        slice_ns = int(SLICE_S * 1e9)
        while True:
            elapsed = self._elapsed_ns()
            ran = self.advance(elapsed, deadline_ns=time.monotonic_ns() + slice_ns)
            due = self._due[0][0]
            elapsed = self._elapsed_ns()
            if due <= elapsed:  # behind: let the streams send (and signals in), then go on at once
                self._bound_lag(elapsed - due)
                await asyncio.sleep(0)
            elif self._subscriptions:
                delay = due - elapsed
                if delay > _TIMER_SLACK_NS:
                    # Event loop timers fire up to a millisecond late: wake a little early instead.
                    await asyncio.sleep(min(delay - _TIMER_SLACK_NS, _MAX_SLEEP_NS) / 1e9)
                elif ran:
                    await asyncio.sleep(0)  # the streams send what was just published first
                else:
                    time.sleep(delay / 1e9)  # noqa: ASYNC251 - under a millisecond, for precision
            else:
                self._subscribed.clear()
                try:
                    async with asyncio.timeout(self.idle_step_s):
                        await self._subscribed.wait()
                except TimeoutError:
                    pass

    def _elapsed_ns(self) -> int:
        """Simulated time that is due now, by the wall clock (less any shift after falling behind)."""
        return time.monotonic_ns() - self._start_mono_ns - self.shifted_ns

    def _bound_lag(self, lag_ns: int) -> None:
        """Keep the lag behind the wall clock under MAX_LAG_S by moving the time mapping on (see the docstring)."""
        excess = lag_ns - int(MAX_LAG_S * 1e9)
        if excess <= 0:
            return
        self.shifted_ns += excess
        self._start_ns += excess
        now = time.monotonic_ns()
        if now - self._last_lag_warning_ns >= _LAG_WARNING_INTERVAL_NS:
            self._last_lag_warning_ns = now
            logger.warning(
                "the simulation cannot keep up with --rate %g on this machine and runs slower than real time: "
                "%.1f s behind the wall clock so far (event times lag by at most %g s)",
                self.rate,
                self.shifted_ns / 1e9,
                MAX_LAG_S,
            )

    def advance(self, elapsed_ns: int, max_events: int | None = None, deadline_ns: int | None = None) -> int:
        """Run and publish the events due by ``elapsed_ns`` of simulated time, all instruments in simulated-time
        order; stop early after ``max_events`` events or once ``time.monotonic_ns()`` passes ``deadline_ns``.
        Returns how many ran. The engine calls this; tests may call it directly on a hub that was never
        started."""
        due = self._due
        count = 0
        while due[0][0] <= elapsed_ns:
            _, index, sim = due[0]
            self._publish(sim, sim.next_event())
            heapq.heapreplace(due, (sim.next_offset_ns, index, sim))
            count += 1
            if count == max_events or (deadline_ns is not None and time.monotonic_ns() >= deadline_ns):
                break
        return count

    def _publish(self, sim: InstrumentSimulator, event: Event) -> None:
        self.events += 1
        groups = self._groups[sim.instrument_id]
        if not groups:
            return
        iid = sim.instrument_id
        event_time_ns = self._start_ns + event.offset_ns
        book = sim.book
        changes = event.changes
        checksums = self._checksums[iid]
        used: dict[int, int] = {}  # checksum by levels, computed once per event
        for depth, group in groups.items():
            n = depth if depth < CHECKSUM_LEVELS else CHECKSUM_LEVELS
            checksum = used.get(n)
            if checksum is None:
                checksum = used[n] = checksums[n].get(book, changes)
            if event.heartbeat:
                message = heartbeat_message(iid, event.sequence, event_time_ns, checksum)
            else:
                message = _update_pb(
                    iid, event.sequence, event_time_ns, checksum, group.view.diff(changes), event.trades
                )
            for sub in group.subscribers:
                buffer = sub._buffer
                if len(buffer) >= sub.max_backlog:
                    # The snapshots are taken after this event: they replace this message too.
                    self._resync(sub)
                else:
                    buffer.append(message)
                if not sub._wakeup.is_set():
                    sub._wakeup.set()
