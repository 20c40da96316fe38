"""What the engine plays: an event source (the simulation today, a recorded session replayed, later live feeds).

The engine (feed_server.server.engine) paces a source against the wall clock; the fan-out
(feed_server.server.fanout) turns what the source publishes into subscribers' messages. A source says when its
next item is due (``next_due_ns``, ns of engine time since its start), runs what is due when asked
(``advance``), and publishes it through the fan-out. Its per-instrument books (``books``) are what the fan-out
builds snapshots and depth views from.

:class:`SimulatedMarket` is the simulators of feed_server.server.simulator: all instruments run in simulated-time
order (a heap on each simulator's next due time), and each ``advance`` publishes one message per instrument with
all of that instrument's events (see the engine's "Messages per slice").
"""

from __future__ import annotations

import heapq
import sys
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from feed_server.protocol.book import MAX_DEPTH
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.server.simulator import Event, InstrumentSimulator

if TYPE_CHECKING:
    from feed_server.server.fanout import BookSource, Fanout

__all__ = ["END_NS", "EventSource", "SimulatedMarket"]

END_NS = sys.maxsize  # next_due_ns() of a source with nothing left to play


class EventSource(Protocol):
    """What the engine needs of a source (see the module docstring)."""

    @property
    def specs(self) -> Mapping[str, InstrumentSpec]: ...  # the instruments, in the order ListInstruments gives

    @property
    def books(self) -> Mapping[str, BookSource]: ...  # by instrument id, as the fan-out reads them

    @property
    def max_depth(self) -> int: ...  # the deepest book a subscriber may ask for

    @property
    def paced(self) -> bool: ...  # False: played as fast as the subscribers take it (a replay at --speed max)

    @property
    def starts_on_subscriber(self) -> bool: ...  # its time 0 is when the first subscriber came (a replay)

    @property
    def absolute_times(self) -> bool: ...  # its books' time_ns are wall times, not offsets (--original-times)

    @property
    def depth_note(self) -> str: ...  # why max_depth is what it is, in a refusal of a deeper request ("" if plain)

    @property
    def description(self) -> str: ...  # one line for people: "simulator (seed 1, 50 events/s per instrument)"

    def bind(self, fanout: Fanout) -> None: ...  # called once by the engine, with the fan-out it publishes to

    async def run(self) -> None: ...  # what arrives by itself (a live exchange), beside the engine; else returns

    def event_counts(self) -> Mapping[str, int]: ...  # per instrument, what it has run so far (metrics)

    def next_due_ns(self) -> int: ...  # engine time of the next item, END_NS when there is none

    def advance(
        self, fanout: Fanout, elapsed_ns: int, max_events: int | None = None, deadline_ns: int | None = None
    ) -> int: ...  # run and publish what is due by elapsed_ns (bounded); how many items ran


class SimulatedMarket:
    """The simulated instruments as an :class:`EventSource` (see the module docstring)."""

    paced = True
    starts_on_subscriber = False
    absolute_times = False
    max_depth = MAX_DEPTH
    depth_note = ""

    def __init__(self, instruments: Iterable[InstrumentSpec], seed: int, rate: float) -> None:
        self.specs: dict[str, InstrumentSpec] = {spec.instrument_id: spec for spec in instruments}
        if not self.specs:
            raise ValueError("an engine needs at least one instrument")
        self.seed = seed
        self.rate = rate
        self.simulators: dict[str, InstrumentSimulator] = {
            iid: InstrumentSimulator(spec, seed, rate) for iid, spec in self.specs.items()
        }
        # The simulators by next due time (simulated ns), ties in instrument order: the run order.
        self._due: list[tuple[int, int, InstrumentSimulator]] = [
            (sim.next_offset_ns, index, sim) for index, sim in enumerate(self.simulators.values())
        ]
        heapq.heapify(self._due)
        self._sims = list(self.simulators.values())  # by index, as in _due
        self._batches: list[list[Event]] = [[] for _ in self._sims]  # advance(): the events run, per simulator

    @property
    def books(self) -> Mapping[str, InstrumentSimulator]:
        return self.simulators

    @property
    def description(self) -> str:
        return f"simulator (seed {self.seed}, {self.rate:g} events/s per instrument)"

    def bind(self, fanout: Fanout) -> None:
        """Nothing to tell the fan-out: every simulator starts at sequence 0."""

    async def run(self) -> None:
        """Nothing arrives by itself: the engine runs every event (``advance``)."""

    def event_counts(self) -> dict[str, int]:
        return {iid: sim.sequence for iid, sim in self.simulators.items()}

    def next_due_ns(self) -> int:
        return self._due[0][0]

    def advance(
        self, fanout: Fanout, elapsed_ns: int, max_events: int | None = None, deadline_ns: int | None = None
    ) -> int:
        """Run the events due by ``elapsed_ns``, all instruments in simulated-time order, then publish one message
        per instrument that had events (each carries every event of its instrument in this call). Stops early
        after ``max_events`` events or once ``time.monotonic_ns()`` passes ``deadline_ns``."""
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
        publish = fanout.publish
        start_ns = fanout.time_base()
        for sim, events in zip(self._sims, batches, strict=True):
            if events:
                publish(sim, events, start_ns + events[-1].offset_ns)
                events.clear()  # publish() keeps nothing of the list itself
        return count
