"""The engine in a running event loop: it never blocks the loop, publishes events close to (never before) their
due time, and when its task dies it ends every subscription and refuses new ones."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time

import pytest

from feed_server.protocol.book import OrderBook
from feed_server.protocol.errors import Code, FeedStopped
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.protocol.wire import apply_message
from feed_server.server.engine import Engine


async def test_the_engine_never_blocks_the_event_loop_and_publishes_events_when_due(monkeypatch):
    loop_thread = threading.get_ident()
    blocking: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        if threading.get_ident() == loop_thread:
            blocking.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    # 3 instruments at 300/s: events about a millisecond apart, so many waits are shorter than a millisecond.
    engine = Engine(DEFAULT_INSTRUMENTS[:3], seed=4, rate=300.0)
    subscription = engine.fanout.subscribe(None, 10)
    lateness_ms: list[float] = []
    engine.start()
    try:
        async with asyncio.timeout(10):
            subscription.take_nowait()  # the initial snapshots
            started = time.monotonic()
            while time.monotonic() - started < 1.5:
                batch = await subscription.next_batch()
                assert batch is not None
                now = time.time_ns()
                lateness_ms.extend((now - message.event_time_ns) / 1e6 for message in batch)
    finally:
        await engine.close()
    assert blocking == [], f"the engine blocked the event loop {len(blocking)} times"
    assert len(lateness_ms) > 500
    assert min(lateness_ms) > -0.2, "an event was published before its event time"
    # About a millisecond by design (timer resolution); generous for a busy test machine.
    assert statistics.median(lateness_ms) < 5.0, f"median {statistics.median(lateness_ms):.2f} ms after due"


async def test_a_failed_engine_ends_every_subscription_and_refuses_new_ones():
    engine = Engine(DEFAULT_INSTRUMENTS[:2], seed=1, rate=500.0, crash_after_events=200)
    subscription = engine.fanout.subscribe(["AAPL"], 5)
    engine.start()
    try:
        async with asyncio.timeout(10):
            await engine.failed.wait()
            while (batch := await subscription.next_batch()) is not None:  # what was published, then the end
                assert batch
    finally:
        await engine.close()
    assert not engine.running
    assert engine.events >= 200
    reason = engine.failure_reason
    assert reason is not None and reason.startswith("the feed's engine failed: RuntimeError: crashed on purpose")
    with pytest.raises(FeedStopped, match="crashed on purpose") as info:
        engine.core.subscribe(["AAPL"], 5)
    assert info.value.code is Code.UNAVAILABLE
    with pytest.raises(FeedStopped, match="crashed on purpose"):
        engine.core.snapshot("AAPL", 5)


def test_the_crash_hook_must_be_positive():
    with pytest.raises(ValueError, match="crash_after_events"):
        Engine(DEFAULT_INSTRUMENTS[:1], crash_after_events=0)


@pytest.mark.parametrize("depth", [5, 100])
def test_each_advance_publishes_one_message_per_instrument_with_all_its_events(depth: int) -> None:
    """Driven by hand (never started): every advance() gives one message per instrument that had events, the
    sequence counts messages, and applying each message gives exactly the simulator's book after those events."""
    engine = Engine(DEFAULT_INSTRUMENTS[:2], seed=9, rate=5_000.0)
    subscription = engine.fanout.subscribe(None, depth)
    books: dict[str, OrderBook] = {}
    for message in subscription.take_nowait():
        books[message.instrument_id] = OrderBook(message.instrument_id, depth)
        apply_message(books[message.instrument_id], message)
        assert message.sequence == 0
    multi_event_messages = 0
    elapsed_ns = 0
    for step in range(400):
        before = {iid: sim.sequence for iid, sim in engine.simulators.items()}
        elapsed_ns += (step % 7 + 1) * 300_000  # 0.3 to 2.1 ms of simulated time: 1 to ~20 events each
        ran = engine.advance(elapsed_ns)
        messages = subscription.take_nowait()
        events = {iid: sim.sequence - before[iid] for iid, sim in engine.simulators.items()}
        assert ran == sum(events.values())
        assert sorted(m.instrument_id for m in messages) == sorted(iid for iid, n in events.items() if n)
        for message in messages:
            iid = message.instrument_id
            book = books[iid]
            assert message.sequence == (book.sequence or 0) + 1  # one per advance, whatever the number of events
            apply_message(book, message)  # verifies the sequence, the checksum and the digest
            truth = engine.simulators[iid].book
            assert (book.bids(), book.asks()) == (truth.bids(depth), truth.asks(depth)), (iid, message.sequence)
            changes = [(c.side, c.price_ticks) for c in message.update.changes]
            assert len(changes) == len(set(changes)), "a level appears twice in one message"
            multi_event_messages += events[iid] > 1
    assert multi_event_messages > 100


def test_a_snapshot_carries_the_sequence_of_the_last_message() -> None:
    engine = Engine(DEFAULT_INSTRUMENTS[:1], seed=3, rate=5_000.0)
    iid = DEFAULT_INSTRUMENTS[0].instrument_id
    for step in range(1, 6):
        engine.advance(step * 2_000_000)  # several events, one message each time
    snapshot = engine.fanout.get_snapshot(iid, 10)
    assert snapshot.sequence == 5 < engine.simulators[iid].sequence
