"""The pacing engine: plays the simulators against the wall clock and hands their events to the fan-out.

One engine task paces every :class:`~feed_server.server.simulator.InstrumentSimulator`. It runs the events of
all instruments in simulated-time order (a heap on each simulator's next due time), so no instrument is
favoured, and publishes them as soon as they are due (``event_time_ns`` = the engine's start wall time + the
event's simulated offset): between wake-ups it awaits ``asyncio.sleep`` until the next event is due, so the
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
server (feed_server.server.grpc_server) watches to report NOT_SERVING and exit non-zero. No event is published
after it: a broken feed says so instead of going quiet. ``crash_after_events`` is a test hook that makes the
task fail on purpose once that many events have run (checked once per slice).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import sys
import time
from collections.abc import Iterable

from feed_server.protocol.instruments import InstrumentSpec
from feed_server.server.fanout import DEFAULT_MAX_BACKLOG, DEFAULT_MAX_BATCH, Fanout
from feed_server.server.simulator import Event, InstrumentSimulator

__all__ = ["BUSY_EVENTS", "BUSY_TICK_S", "DEFAULT_IDLE_STEP_S", "MAX_LAG_S", "SLICE_S", "Engine"]

logger = logging.getLogger(__name__)

DEFAULT_IDLE_STEP_S = 0.1  # with no subscriber: how often the engine runs the simulation up to now
SLICE_S = 0.005  # the most the engine works before it returns to the event loop
MAX_LAG_S = 0.25  # behind the wall clock by more than this, the simulated-to-wall-time mapping moves on
BUSY_EVENTS = 8  # a wake-up that ran this many events means the feed is busy (thousands of events per second)
BUSY_TICK_S = 0.002  # busy, the engine wakes up at most this often (see "Messages per slice")
_BUSY_TICK_NS = int(BUSY_TICK_S * 1e9)
_MAX_SLEEP_NS = 100_000_000  # the longest the engine sleeps with subscribers (the next event is usually sooner)
_LAG_WARNING_INTERVAL_NS = 10_000_000_000


class Engine:
    """Runs the simulators and feeds their events to ``self.fanout`` (see the module docstring)."""

    def __init__(
        self,
        instruments: Iterable[InstrumentSpec],
        *,
        seed: int = 1,
        rate: float = 50.0,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        max_batch: int = DEFAULT_MAX_BATCH,
        idle_step_s: float = DEFAULT_IDLE_STEP_S,
        crash_after_events: int | None = None,
    ) -> None:
        """``crash_after_events`` is for tests only: the engine task fails on purpose after that many events."""
        self.specs: dict[str, InstrumentSpec] = {spec.instrument_id: spec for spec in instruments}
        if not self.specs:
            raise ValueError("an engine needs at least one instrument")
        if idle_step_s <= 0:
            raise ValueError("idle_step_s must be positive")
        if crash_after_events is not None and crash_after_events < 1:
            raise ValueError("crash_after_events must be positive")
        self.crash_after_events = crash_after_events
        self.seed = seed
        self.rate = rate
        self.idle_step_s = idle_step_s
        self.simulators: dict[str, InstrumentSimulator] = {
            iid: InstrumentSimulator(spec, seed, rate) for iid, spec in self.specs.items()
        }
        self.fanout = Fanout(self.simulators, lambda: self._start_ns, max_backlog=max_backlog, max_batch=max_batch)
        self.events = 0  # events and heartbeats run so far, all instruments
        # The simulators by next due time (simulated ns), ties in instrument order: the engine's run order.
        self._due: list[tuple[int, int, InstrumentSimulator]] = [
            (sim.next_offset_ns, index, sim) for index, sim in enumerate(self.simulators.values())
        ]
        heapq.heapify(self._due)
        self._sims = list(self.simulators.values())  # by index, as in _due
        self._batches: list[list[Event]] = [[] for _ in self._sims]  # advance(): the events run, per simulator
        self._start_ns = time.time_ns()
        self._start_mono_ns = time.monotonic_ns()
        self._task: asyncio.Task[None] | None = None
        self.shifted_ns = 0  # how far the simulated-to-wall-time mapping moved on because the engine fell behind
        self.lag_ns = 0  # how far behind the wall clock the engine was after its last slice (0: on time)
        self._last_lag_warning_ns = 0
        self.failure: BaseException | None = None  # what the engine task died of, if it did
        self.failed = asyncio.Event()  # set when the engine task dies of an exception

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
        slice_ns = int(SLICE_S * 1e9)
        fanout = self.fanout
        crash_at = sys.maxsize if self.crash_after_events is None else self.crash_after_events
        while True:
            elapsed = self._elapsed_ns()
            ran = self.advance(elapsed, deadline_ns=time.monotonic_ns() + slice_ns)
            if self.events >= crash_at:
                raise RuntimeError(f"crashed on purpose after {self.events} events (crash_after_events, a test hook)")
            due = self._due[0][0]
            elapsed = self._elapsed_ns()
            if due <= elapsed:  # behind: let the streams send (and signals in), then go on at once
                self.lag_ns = elapsed - due
                self._bound_lag(self.lag_ns)
                await asyncio.sleep(0)
            elif fanout.subscriber_count:
                self.lag_ns = 0
                # The streams send what was just published meanwhile; the timer fires up to a millisecond late.
                # Busy (many events per wake-up), wake up at most every BUSY_TICK_S: fewer, larger messages.
                wait_ns = min(due - elapsed, _MAX_SLEEP_NS)
                await asyncio.sleep((wait_ns if ran < BUSY_EVENTS else max(wait_ns, _BUSY_TICK_NS)) / 1e9)
            else:
                self.lag_ns = 0
                fanout.subscribed.clear()
                try:
                    async with asyncio.timeout(self.idle_step_s):
                        await fanout.subscribed.wait()
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
        """Run the events due by ``elapsed_ns`` of simulated time, all instruments in simulated-time order, and
        publish them: one message per instrument that had events, built once they have all run (so each
        message carries every event of its instrument in this call). Stop early after ``max_events`` events or
        once ``time.monotonic_ns()`` passes ``deadline_ns``. Returns how many ran. The engine task calls this;
        tests may call it directly on an engine that was never started."""
        due = self._due
        batches = self._batches
        count = 0
        while due[0][0] <= elapsed_ns:
            _, index, sim = due[0]
            batches[index].append(sim.next_event())
            heapq.heapreplace(due, (sim.next_offset_ns, index, sim))
            count += 1
            if count == max_events or (deadline_ns is not None and time.monotonic_ns() >= deadline_ns):
                break
        self.events += count
        publish = self.fanout.publish
        for sim, events in zip(self._sims, batches, strict=True):
            if events:
                publish(sim, events, self._start_ns + events[-1].offset_ns)
                events.clear()  # publish() keeps nothing of the list itself
        return count
