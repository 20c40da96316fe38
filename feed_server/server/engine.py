"""The pacing engine: plays an event source against the wall clock and hands what it runs to the fan-out.

The source (feed_server.server.sources) is the simulation, or a recorded session replayed
(feed_server.server.replay); the pacing, slicing, lag, idle and failure rules below hold for both. A source that
is not paced (a replay at ``--speed max``) is played as fast as the subscribers take it: the engine waits while
none is subscribed, or while one has ``UNPACED_BACKLOG`` messages it has not taken yet. A source that
``starts_on_subscriber`` (a replay) is not run before its first subscriber comes; its time 0 is then.

For the simulation, one engine task paces every :class:`~feed_server.server.simulator.InstrumentSimulator`.
It runs the events of all instruments in simulated-time order (a heap on each simulator's next due time), so no
instrument is favoured, and publishes them as soon as they are due (``event_time_ns`` = the engine's start wall
time + the event's simulated offset): between wake-ups it awaits ``asyncio.sleep`` until the next event is due, so the
streams send and health checks are answered meanwhile. It never blocks the event loop: an event loop timer fires
up to a millisecond late (epoll's resolution), so an event leaves the engine within about a millisecond after
its event time, never before it.

Messages per slice. Each wake-up (a slice) runs every event due by then and publishes, per instrument, one
message with all of that instrument's events of the slice (:meth:`Fanout.publish`; its ``event_time_ns`` is the
last one's). At low rates a wake-up finds one event, so a message is one event and nothing waits; when events
come faster than the engine wakes up (thousands per second), the events due since the last wake-up share one
message per instrument, which is what keeps the cost per event low at high rates: the checksum, the digest,
the protobuf message, the stream item and the consumer's verification are paid once per message. When a
wake-up ran ``BUSY_EVENTS`` events or more, the engine sleeps at least ``BUSY_TICK_S`` before the next one
(an event then waits at most that long, far below the latency targets at those rates), so that a busy feed
wakes up a few hundred times a second, not a thousand. What is built
for subscribers is the fan-out's business (feed_server.server.fanout).

Fairness and responsiveness. The engine works in slices of at most ``SLICE_S`` (wall clock) and always returns
to the event loop between slices, so the gRPC streams keep sending and signals are handled promptly even when
the simulation cannot keep up with ``--rate``. When it is behind it goes on at once (no sleep) after each slice.

Falling behind. The simulated clock is never bent: every event is run, in order, with its simulated time. When
the engine falls more than ``MAX_LAG_S`` behind the wall clock, the mapping of simulated time to wall time is
moved on by the excess (``start_ns`` grows), and a warning is logged at most every 10 s: the lag consumers see
in ``event_time_ns`` stays bounded, and the feed simply runs slower than real time, with exactly the same
messages (only ``event_time_ns`` shifts). Per instrument, ``event_time_ns`` never goes backwards.

Idle. With no subscriber the engine runs the simulation in coarse steps (every ``idle_step_s``) so a new
subscriber still gets a live book; nothing is encoded. A new subscription wakes the engine at once.

Failure. If the engine task dies of an exception (a bug), the engine logs it once at ERROR with its traceback,
keeps it as ``failure``, closes the fan-out with a reason naming it (every subscription ends, and new
subscriptions and snapshots are refused with FeedStopped, ``UNAVAILABLE``) and sets ``failed``, which the
server (feed_server.server.feed) watches to report NOT_SERVING and exit non-zero. No event is published
after it: a broken feed says so instead of going quiet. ``crash_after_events`` is a test hook that makes the
task fail on purpose once that many events have run (checked once per slice).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Iterable, Mapping

from feed_server.protocol.instruments import InstrumentSpec
from feed_server.server.fanout import DEFAULT_MAX_BACKLOG, DEFAULT_MAX_BATCH, Fanout
from feed_server.server.feed_core import FeedCore
from feed_server.server.simulator import InstrumentSimulator
from feed_server.server.sources import END_NS, EventSource, SimulatedMarket

__all__ = ["BUSY_EVENTS", "BUSY_TICK_S", "DEFAULT_IDLE_STEP_S", "MAX_LAG_S", "SLICE_S", "UNPACED_BACKLOG", "Engine"]

logger = logging.getLogger(__name__)

DEFAULT_IDLE_STEP_S = 0.1  # with no subscriber: how often the engine runs the simulation up to now
SLICE_S = 0.005  # the most the engine works before it returns to the event loop
MAX_LAG_S = 0.25  # behind the wall clock by more than this, the simulated-to-wall-time mapping moves on
BUSY_EVENTS = 8  # a wake-up that ran this many events means the feed is busy (thousands of events per second)
BUSY_TICK_S = 0.002  # busy, the engine wakes up at most this often (see "Messages per slice")
_BUSY_TICK_NS = int(BUSY_TICK_S * 1e9)
UNPACED_BACKLOG = 5_000  # an unpaced source waits while a subscriber has this many messages not yet taken
_MAX_SLEEP_NS = 100_000_000  # the longest the engine sleeps with subscribers (the next event is usually sooner)
_LAG_WARNING_INTERVAL_NS = 10_000_000_000


class Engine:
    """Runs the simulators and feeds their events to ``self.fanout`` (see the module docstring)."""

    def __init__(
        self,
        instruments: Iterable[InstrumentSpec] = (),
        *,
        seed: int = 1,
        rate: float = 50.0,
        source: EventSource | None = None,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        max_batch: int = DEFAULT_MAX_BATCH,
        idle_step_s: float = DEFAULT_IDLE_STEP_S,
        crash_after_events: int | None = None,
    ) -> None:
        """Plays ``source``, or without one the simulation of ``instruments`` (``seed``, ``rate``).

        ``crash_after_events`` is for tests only: the engine task fails on purpose after that many events."""
        if idle_step_s <= 0:
            raise ValueError("idle_step_s must be positive")
        if crash_after_events is not None and crash_after_events < 1:
            raise ValueError("crash_after_events must be positive")
        self.source: EventSource = source if source is not None else SimulatedMarket(instruments, seed, rate)
        self.specs: Mapping[str, InstrumentSpec] = self.source.specs
        self.crash_after_events = crash_after_events
        self.idle_step_s = idle_step_s
        self.fanout = Fanout(
            self.source.books,
            self._time_base,
            max_backlog=max_backlog,
            max_batch=max_batch,
            max_depth=self.source.max_depth,
            depth_note=self.source.depth_note,
        )
        self.source.bind(self.fanout)
        # What the transports call (validation, snapshots, the instrument list): feed_server.server.feed_core.
        self.core = FeedCore(
            self.fanout, self.specs.values(), self.source.description, failure=lambda: self.failure_reason
        )
        # A source that starts on its first subscriber is not playing before it: its time 0 is "now" until then.
        self._playing = not self.source.starts_on_subscriber
        self.events = 0  # items (events and heartbeats, or recorded messages) run so far, all instruments
        self._start_ns = time.time_ns()
        self._start_mono_ns = time.monotonic_ns()
        self._task: asyncio.Task[None] | None = None
        self.shifted_ns = 0  # how far the source-to-wall-time mapping moved on because the engine fell behind
        self.lag_ns = 0  # how far behind the wall clock the engine was after its last slice (0: on time)
        self._last_lag_warning_ns = 0
        self.failure: BaseException | None = None  # what the engine task died of, if it did
        self.failed = asyncio.Event()  # set when the engine task dies of an exception

    @property
    def simulators(self) -> Mapping[str, InstrumentSimulator]:
        """The simulators, when the source is the simulation (tests and tools read them)."""
        if not isinstance(self.source, SimulatedMarket):
            raise TypeError(f"the engine plays {self.source.description}, not the simulation")
        return self.source.simulators

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the engine task (in the running event loop). Simulated time 0 is now."""
        if self._task is not None:
            raise RuntimeError("engine already started")
        self._start_ns = time.time_ns()
        self._start_mono_ns = time.monotonic_ns()
        self._task = asyncio.create_task(self._run(), name="feed-engine")
        self._task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """The engine task's end: on a failure, log it once, end every subscription with its reason, set failed."""
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        self.failure = error  # before the fan-out closes: the service names it to the streams that end now
        logger.error("the engine failed; no more events will be published", exc_info=error)
        self.fanout.close_all(self.failure_reason or "the feed's engine failed")
        self.failed.set()

    @property
    def failure_reason(self) -> str | None:
        """Why the feed is broken (``"the feed's engine failed: RuntimeError: ..."``), or None while it is not."""
        if self.failure is None:
            return None
        return f"the feed's engine failed: {type(self.failure).__name__}: {self.failure}"

    async def close(self) -> None:
        """End every subscription and stop the engine task.

        The fan-out is closed before the first await: from the call on, new subscriptions and snapshots are
        refused (FeedStopped)."""
        self.fanout.close_all()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])  # our own cancellation still propagates

    def _time_base(self) -> int:
        """The fan-out's time base: event_time_ns = this + source.time_ns (see Fanout)."""
        if self.source.absolute_times:
            return 0
        return self._start_ns if self._playing else time.time_ns()

    @property
    def start_ns(self) -> int:
        """Wall time (ns since the epoch) of simulated time 0: event_time_ns = start_ns + offset_ns.

        It only changes (grows) when the engine falls more than MAX_LAG_S behind the wall clock."""
        return self._start_ns

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # ----------------------------------------------------------------- the loop
    async def _run(self) -> None:
        """The source's own task (a live exchange: what arrives by itself) beside the engine's loop; either one
        failing fails the engine."""
        arriving = asyncio.create_task(self.source.run(), name="feed-source")
        playing = asyncio.create_task(self._play(), name="feed-engine-loop")
        try:
            done, _ = await asyncio.wait({arriving, playing}, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # a failure is the engine's
            await playing  # the source had nothing of its own to run
        finally:
            for task in (arriving, playing):
                task.cancel()
            await asyncio.wait({arriving, playing})

    async def _play(self) -> None:
        slice_ns = int(SLICE_S * 1e9)
        registry = self.fanout.registry
        source = self.source
        crash_at = sys.maxsize if self.crash_after_events is None else self.crash_after_events
        if source.starts_on_subscriber:  # time 0 is when the first subscriber came
            while not registry.count:
                registry.subscribed.clear()
                await registry.subscribed.wait()
            self._start_ns = time.time_ns()
            self._start_mono_ns = time.monotonic_ns()
            self._playing = True
        while True:
            if not source.paced and source.next_due_ns() != END_NS:
                await registry.wait_for_takers(UNPACED_BACKLOG)  # played as fast as the subscribers take it
            elapsed = self._elapsed_ns()
            ran = self.advance(elapsed, deadline_ns=time.monotonic_ns() + slice_ns)
            if self.events >= crash_at:
                raise RuntimeError(f"crashed on purpose after {self.events} events (crash_after_events, a test hook)")
            due = source.next_due_ns()
            elapsed = self._elapsed_ns()
            if due <= elapsed:  # behind: let the streams send (and signals in), then go on at once
                if source.paced:
                    self.lag_ns = elapsed - due
                    self._bound_lag(self.lag_ns)
                await asyncio.sleep(0)
            elif registry.count:
                self.lag_ns = 0
                # The streams send what was just published meanwhile; the timer fires up to a millisecond late.
                # Busy (many events per wake-up), wake up at most every BUSY_TICK_S: fewer, larger messages.
                wait_ns = min(due - elapsed, _MAX_SLEEP_NS)
                await asyncio.sleep((wait_ns if ran < BUSY_EVENTS else max(wait_ns, _BUSY_TICK_NS)) / 1e9)
            else:
                self.lag_ns = 0
                registry.subscribed.clear()
                try:
                    async with asyncio.timeout(self.idle_step_s):
                        await registry.subscribed.wait()
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
                "the %s cannot keep up on this machine and runs slower than real time: "
                "%.1f s behind the wall clock so far (event times lag by at most %g s)",
                self.source.description,
                self.shifted_ns / 1e9,
                MAX_LAG_S,
            )

    def advance(self, elapsed_ns: int, max_events: int | None = None, deadline_ns: int | None = None) -> int:
        """Run and publish what the source has due by ``elapsed_ns`` of engine time (for the simulation: its
        events in simulated-time order, one message per instrument that had events). Stop early after
        ``max_events`` items or once ``time.monotonic_ns()`` passes ``deadline_ns``. Returns how many ran. The
        engine task calls this; tests may call it directly on an engine that was never started."""
        count = self.source.advance(self.fanout, elapsed_ns, max_events, deadline_ns)
        self.events += count
        return count
