"""Row 11: the simulation engine's ceiling, in this process, on one core.

An :class:`~feed_server.server.engine.Engine` on the seven default instruments at the rate giving about 20,000
level changes/s, never started and with no subscriber, runs ``advance`` over far more simulated time than it
can reach (so it never waits for the clock) for a fixed number of events, timed with ``time.process_time``
(CPU of this process, so other processes on the machine do not count). With no subscriber the fan-out builds
nothing: this is the simulation and the engine's scheduling alone. Events include heartbeats, which at this rate
(an event every half millisecond per instrument) do not occur.
"""

from __future__ import annotations

import logging
import time

from bench.latency import rate_for
from bench.report import Result, at_least
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.server.engine import Engine

__all__ = ["run"]

log = logging.getLogger(__name__)

FAR_NS = 10**15  # simulated time to run up to: about 11 days, never reached
WARMUP_EVENTS = 5_000  # books filled and code paths warm before the timing


def run(quick: bool) -> list[Result]:
    events = 20_000 if quick else 300_000
    rate = rate_for(20_000)
    engine = Engine(DEFAULT_INSTRUMENTS, seed=1, rate=rate)
    engine.advance(FAR_NS, max_events=WARMUP_EVENTS)
    start = time.process_time()
    ran = engine.advance(FAR_NS, max_events=events)
    cpu = time.process_time() - start
    log.info("engine ceiling: %d events in %.3f s of CPU", ran, cpu)
    return [
        Result(
            "11",
            f"engine ceiling: order events/s on one core, in-process, {len(engine.simulators)} instruments, "
            "no subscriber",
            ran / cpu,
            "events/s",
            at_least(100_000, ">= 100,000"),
            note=f"{ran:,} events in {cpu:.2f} s of CPU (--rate {rate:g} per instrument, "
            f"{1e6 * cpu / ran:.1f} µs per event)",
        )
    ]
