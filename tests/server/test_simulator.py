"""The simulator and the engine's publishing path, without the network: the stream rebuilds true books."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feed_server.protocol.book import OrderBook, Side
from feed_server.protocol.errors import BookError
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.wire import apply_message
from feed_server.server.engine import Engine
from feed_server.server.simulator import FAIR_STEP_NS, HEARTBEAT_INTERVAL_NS, InstrumentSimulator, book_at
from tests.truth import TruthCursor

SPECS = {spec.instrument_id: spec for spec in DEFAULT_INSTRUMENTS}
STEP_NS = 20_000_000


def _stream(engine: Engine, instrument_ids: list[str], depth: int, events: int) -> list[pb.BookMessage]:
    """The messages one subscriber gets while the engine runs about ``events`` events per instrument."""
    sub = engine.fanout.subscribe(instrument_ids, depth)
    out = sub.take_nowait()
    elapsed = 0
    sims = [engine.simulators[iid] for iid in instrument_ids]
    for _ in range(1_000_000):
        if min(sim.sequence for sim in sims) >= events:
            break
        elapsed += STEP_NS
        engine.advance(elapsed, max_events=1_000_000)
        out.extend(sub.take_nowait())
    return out


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=2**31),
    depth=st.sampled_from([1, 3, 10, 20, 100]),
    instrument_id=st.sampled_from(sorted(SPECS)),
    rate=st.sampled_from([20.0, 500.0, 5000.0]),
)
def test_stream_rebuilds_a_true_book_after_every_message(seed: int, depth: int, instrument_id: str, rate: float):
    engine = Engine([SPECS[instrument_id]], seed=seed, rate=rate)
    messages = _stream(engine, [instrument_id], depth, events=2000)
    truth = TruthCursor(SPECS[instrument_id], seed, rate, depth)
    rebuilt = OrderBook(instrument_id, depth)
    assert messages[0].snapshot.reason == pb.SNAPSHOT_REASON_INITIAL
    for expected_sequence, message in enumerate(messages):
        assert message.sequence == expected_sequence
        apply_message(rebuilt, message)  # verifies sequence, crossing and checksum
        truth.seek(rebuilt.bids(), rebuilt.asks(), f"the book at sequence {message.sequence}")
        assert not truth.sim.book.is_crossed()
    engine_sim = engine.simulators[instrument_id]
    assert engine_sim.sequence >= 2000
    truth.sim.step_to(engine_sim.sequence)  # the last message is the engine's book after its last event
    assert (rebuilt.bids(), rebuilt.asks()) == truth.levels()
    assert truth.levels() == (engine_sim.book.bids(depth), engine_sim.book.asks(depth))


def test_the_same_seed_gives_the_same_messages():
    specs = list(DEFAULT_INSTRUMENTS[:3])
    ids = [spec.instrument_id for spec in specs]
    runs = []
    for _ in range(2):
        engine = Engine(specs, seed=42, rate=300.0)
        messages = _stream(engine, ids, 20, events=800)
        for message in messages:
            message.event_time_ns -= engine.start_ns  # wall time differs between runs, simulated time does not
        runs.append([m.SerializeToString(deterministic=True) for m in messages])
    assert runs[0] == runs[1]
    other = Engine(specs, seed=43, rate=300.0)
    assert [m.SerializeToString() for m in _stream(other, ids, 20, events=50)] != runs[0][:50]


@pytest.mark.parametrize("spec", DEFAULT_INSTRUMENTS, ids=lambda spec: spec.instrument_id)
def test_the_book_stays_realistic(spec):
    sim = InstrumentSimulator(spec, seed=7, rate=100.0)
    spreads, bid_levels, ask_levels, trades, changes = [], [], [], 0, 0
    for _ in range(8_000):
        event = sim.next_event()
        book = sim.book
        assert not book.is_crossed()
        assert book.bids(None)[-1][0] > 0 if book.level_count(Side.BID) else True
        trades += len(event.trades)
        changes += len(event.changes)
        if sim.sequence > 500:  # after warm-up: never one-sided, 20-60 levels a side most of the time
            assert book.best_bid() is not None and book.best_ask() is not None
            spreads.append(book.spread())
            bid_levels.append(book.level_count(Side.BID))
            ask_levels.append(book.level_count(Side.ASK))
    assert len(set(spreads)) > 3, "the spread varies"
    for levels in (bid_levels, ask_levels):
        levels.sort()
        median = levels[len(levels) // 2]
        assert 20 <= median <= 61
        assert max(levels) <= 70
    assert trades > 500 and changes > 8_000


def _check_order_queues(sim: InstrumentSimulator) -> None:
    """The simulator's per-level order queues total the book's sizes, side by side, best level first."""
    for levels in (sim._bids, sim._asks):
        assert levels.keys == sorted(levels.queues), "the sorted keys are the queues' keys"
        assert set(levels.totals) == set(levels.queues)
        for key, queue in levels.queues.items():
            assert queue and all(size > 0 for size in queue), "no empty level and no empty order"
            assert sum(queue) == levels.totals[key]
        prices = [levels.sign * key for key in levels.keys]
        assert sim.book.top(levels.side) == [(price, levels.totals[levels.sign * price]) for price in prices]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=2**31),
    instrument_id=st.sampled_from(sorted(SPECS)),
    rate=st.sampled_from([1.0, 100.0, 1900.0, 20_000.0]),
)
def test_each_event_is_the_change_of_the_book_and_the_order_queues_total_the_book(
    seed: int, instrument_id: str, rate: float
):
    sim = InstrumentSimulator(SPECS[instrument_id], seed, rate)
    _check_order_queues(sim)
    before = {side: dict(sim.book.top(side)) for side in Side}
    for sequence in range(1, 3001):
        event = sim.next_event()
        assert event.sequence == sim.sequence == sim.book.sequence == sequence
        after = {side: dict(sim.book.top(side)) for side in Side}
        changed = {
            (side, price)
            for side in Side
            for price in before[side].keys() | after[side].keys()
            if before[side].get(price) != after[side].get(price)
        }
        assert len({(c.side, c.price) for c in event.changes}) == len(event.changes), "each level once"
        assert {(c.side, c.price) for c in event.changes} >= changed, "every change of the book is in the event"
        for change in event.changes:
            assert sim.book.size_at(change.side, change.price) == change.size, "the final size"
        if event.trades:  # one incoming order, taking levels best first, each one fully before the next
            aggressor = event.trades[0].aggressor
            assert {trade.aggressor for trade in event.trades} == {aggressor}
            prices = [trade.price for trade in event.trades]
            assert prices == sorted(prices, reverse=aggressor is Side.ASK)
            taken = {change.price: change.size for change in event.changes if change.side is not aggressor}
            levels_taken = list(dict.fromkeys(prices))
            assert all(taken[price] == 0 for price in levels_taken[:-1]), "a level is taken fully before the next"
        assert not sim.book.is_crossed()
        if sequence % 100 == 0 or event.trades:
            _check_order_queues(sim)
        before = after
    _check_order_queues(sim)


def test_the_simulator_is_a_pure_function_of_seed_rate_and_instrument():
    spec = DEFAULT_INSTRUMENTS[2]
    runs = []
    for seed, rate in ((9, 700.0), (9, 700.0), (10, 700.0), (9, 701.0)):
        sim = InstrumentSimulator(spec, seed, rate)
        runs.append([sim.next_event() for _ in range(2000)])
    assert runs[0] == runs[1]
    assert runs[2] != runs[0] and runs[3] != runs[0]


def test_the_fair_value_moves_on_a_coarse_grid_of_simulated_time():
    sim = InstrumentSimulator(DEFAULT_INSTRUMENTS[0], seed=2, rate=5000.0)
    moves: list[int] = []
    fair = sim._fair
    while sim.time_ns < 5 * 10**9:
        sim.next_event()
        if sim._fair != fair:
            moves.append(sim.time_ns)
            fair = sim._fair
    gaps = [later - earlier for earlier, later in itertools.pairwise(moves)]
    assert len(moves) > 300 and min(gaps) >= FAIR_STEP_NS


def test_heartbeats_fill_quiet_gaps_in_simulated_time():
    sim = InstrumentSimulator(DEFAULT_INSTRUMENTS[0], seed=3, rate=0.2)
    last = 0
    heartbeats = 0
    for sequence in range(1, 200):
        event = sim.next_event()
        assert event.sequence == sequence
        assert 0 < event.offset_ns - last <= HEARTBEAT_INTERVAL_NS
        last = event.offset_ns
        heartbeats += event.heartbeat
        if event.heartbeat:
            assert not event.changes and not event.trades
    assert heartbeats > 150  # one order event every 5 s on average


def test_book_at_gives_the_book_at_a_sequence():
    spec = DEFAULT_INSTRUMENTS[4]
    sim = InstrumentSimulator(spec, seed=11, rate=1000.0)
    sim.step_to(776)
    assert sim.sequence == 776
    before = book_at(spec, 11, 1000.0, 776)
    assert before == sim.book
    event = sim.next_event()  # event 777 changes the book (it is an order event, not a heartbeat)
    assert event.sequence == 777 and event.changes and not event.heartbeat
    after = book_at(spec, 11, 1000.0, 777)
    assert after == sim.book
    assert after != before
    # A heartbeat leaves the book as it was: on a quiet instrument, the book at a heartbeat is the one before.
    quiet = InstrumentSimulator(spec, seed=11, rate=0.2)
    heartbeat = next(e for e in iter(quiet.next_event, None) if e.heartbeat and e.sequence > 1)
    assert book_at(spec, 11, 0.2, heartbeat.sequence) == book_at(spec, 11, 0.2, heartbeat.sequence - 1)


def test_a_full_subscriber_is_resynchronised_and_stays_consistent():
    spec = DEFAULT_INSTRUMENTS[0]
    engine = Engine([spec], seed=5, rate=2000.0, max_backlog=100)
    slow = engine.fanout.subscribe([spec.instrument_id], 10)
    elapsed = 0
    for _ in range(100):
        elapsed += STEP_NS
        engine.advance(elapsed)
    assert slow.resyncs >= 1
    messages = slow.take_nowait()
    assert len(messages) <= 100
    first = messages[0]
    assert first.snapshot.reason == pb.SNAPSHOT_REASON_RESYNC
    book = OrderBook(spec.instrument_id, 10)
    for message in messages:
        apply_message(book, message)
    elapsed += STEP_NS
    engine.advance(elapsed)
    for message in slow.take_nowait():
        apply_message(book, message)
    assert book.bids() == engine.simulators[spec.instrument_id].book.bids(10)


def test_a_wrong_message_is_refused_by_the_book():
    engine = Engine([DEFAULT_INSTRUMENTS[1]], seed=1, rate=1000.0)
    messages = _stream(engine, [DEFAULT_INSTRUMENTS[1].instrument_id], 10, events=100)
    book = OrderBook(DEFAULT_INSTRUMENTS[1].instrument_id, 10)
    apply_message(book, messages[0])
    with pytest.raises(BookError):
        apply_message(book, messages[2])  # skips messages[1]


def test_no_subscriber_builds_nothing():
    engine = Engine(DEFAULT_INSTRUMENTS, seed=1, rate=500.0)
    assert engine.advance(2_000_000_000, max_events=1_000_000) > 1000
    sub = engine.fanout.subscribe(["AAPL"], 5)
    engine.fanout.unsubscribe(sub)
    assert sub.closed
    assert engine.fanout.registry.count == 0
    assert not any(engine.fanout.registry.groups(iid) for iid in engine.fanout.sources)
