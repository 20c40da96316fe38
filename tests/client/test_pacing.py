"""No resync storm: the pacing policies with a fake clock, then a subscriber against a really faulty feed."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections import Counter

import pytest

from feed_server.client.grpc_transport import FeedSubscriber
from feed_server.pacing import ResyncPacer, Throttle
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from tests.client.support import running
from tests.servers import running_feed_server


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_resyncs_are_immediate_after_a_clean_minute_and_back_off_while_faults_repeat() -> None:
    clock = FakeClock()
    pacer = ResyncPacer(0.1, 2.0, 60.0, random.Random(1), clock)
    assert pacer.on_fault() == 0.0  # the first fault: at once
    delays = []
    for _ in range(8):
        clock.now += 0.5
        delays.append(pacer.on_fault())
    assert 0.03 <= delays[0] <= 0.2
    assert delays[3] > delays[0] * 4  # exponential
    assert all(d <= 2.0 for d in delays) and delays[-1] >= 1.5  # up to the cap
    clock.now += 59.0
    assert pacer.on_fault() >= 1.5  # within a minute of the last fault: still backing off
    clock.now += 60.0
    assert pacer.on_fault() == 0.0  # a clean minute: at once again
    clock.now += 1.0
    assert pacer.on_fault() <= 0.2  # and the backoff starts afresh
    assert pacer.retry_delay() > 0.0  # a failed request is never retried at once


def test_a_throttle_lets_one_report_through_per_interval_and_counts_the_rest() -> None:
    clock = FakeClock()
    throttle = Throttle(10.0, clock)
    first = throttle.allow("ES-Z6")
    assert first is not None and first.skipped == 0 and first.suffix("faults") == ""
    for _ in range(41):
        clock.now += 0.2
        assert throttle.allow("ES-Z6") is None
    assert throttle.allow("AAPL") is not None, "each key has its own interval"
    clock.now += 10.0
    held = throttle.allow("ES-Z6")
    assert held is not None and held.skipped == 41
    assert held.suffix("faults") == " (and 41 more faults in the last 18 s)"
    assert throttle.allow("ES-Z6") is None
    assert Throttle(0.0, clock).allow("x") is not None


async def test_a_faulty_feed_gets_paced_snapshot_requests_and_counted_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At a 5% fault rate every instrument faults several times a second: snapshot requests back off to one per
    ``resync_backoff_max`` per instrument, and each instrument logs one fault line (with a count) per interval."""
    caplog.set_level(logging.INFO, logger="feed_server.client.subscriber")
    seconds, cap, interval = 3.0, 0.5, 1.0
    ids = [spec.instrument_id for spec in DEFAULT_INSTRUMENTS]
    async with running_feed_server(seed=7, rate=300.0, fault_rate=0.05) as server:
        subscriber = FeedSubscriber(
            server.address,
            depth=20,
            seed=3,
            resync_backoff_initial=0.05,
            resync_backoff_max=cap,
            log_interval=interval,
        )
        async with running(subscriber):
            await subscriber.wait_live(timeout=5)
            started = subscriber.stats.snapshot_requests
            await asyncio.sleep(seconds)  # a fixed window of faults
            requests = subscriber.stats.snapshot_requests - started
    stats = subscriber.stats
    faults = stats.gaps + stats.checksum_errors + stats.digest_errors + stats.crossed + stats.invalid
    # Unpaced, every fault would ask for a snapshot at once: about 10 per instrument and second here.
    ramp = 4  # the delays below the cap: 0.05, 0.1, 0.2, 0.4
    assert requests <= len(ids) * (seconds / (cap * 0.75) + ramp), (requests, faults)
    assert stats.resyncs > len(ids)  # paced, not stopped: every instrument is still repaired
    lines = [r.getMessage() for r in caplog.records if "marked stale, resynchronising" in r.getMessage()]
    per_instrument = Counter(line.split(":")[0] for line in lines)
    elapsed_bound = seconds + 5 + 1  # the window, wait_live, and the first line
    assert all(count <= elapsed_bound / interval + 1 for count in per_instrument.values()), per_instrument
    counted = sum(1 + int(m.group(1)) for line in lines if (m := re.search(r"and (\d+) more faults", line)))
    uncounted = sum(1 for line in lines if "more faults" not in line)
    assert counted + uncounted <= faults and counted > 0, lines
    resynced = [r.getMessage() for r in caplog.records if " resynchronised at sequence " in r.getMessage()]
    assert resynced and len(resynced) < stats.resyncs
