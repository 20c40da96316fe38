"""The replay source in-process: an engine playing a recording (written here from an engine's own stream) through
its fan-out, driven by hand with ``advance``; what subscribers at the recorded depth and below receive, sessions
at each pass, recorded resync snapshots, and a recording that does not verify."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from feed_server.protocol.book import MAX_DEPTH, OrderBook
from feed_server.protocol.errors import InvalidRequest
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.wire import apply_message, instrument_to_pb
from feed_server.record.format import BadRecording, RecordingReader, RecordingWriter
from feed_server.server.engine import Engine
from feed_server.server.replay import ReplaySource

SPECS = DEFAULT_INSTRUMENTS[:3]
STEP_NS = 5_000_000


def write_recording(path: Path, items: Iterable[list[pb.BookMessage]], depth: int = MAX_DEPTH) -> None:
    header = pb.RecordingHeader(
        instruments=[instrument_to_pb(spec) for spec in SPECS], depth=depth, session_id="s1", recorder="test"
    )
    with RecordingWriter(path, header) as writer:
        for messages in items:
            item = pb.SubscribeResponse(session_id="s1", messages=messages)
            writer.write(time.time_ns(), item.SerializeToString())


def engine_items(
    steps: int, *, rate: float = 400.0, max_backlog: int = 50_000, take_every: int = 1
) -> list[list[pb.BookMessage]]:
    """What a simulated engine sends one depth-100 subscriber over ``steps`` 5 ms steps, one item per
    ``take_every`` steps."""
    engine = Engine(SPECS, seed=2, rate=rate, max_backlog=max_backlog)
    subscription = engine.fanout.subscribe(None, MAX_DEPTH)
    items = [subscription.take_nowait()]
    for step in range(1, steps + 1):
        engine.advance(step * STEP_NS)
        if step % take_every == 0 and (batch := subscription.take_nowait()):
            items.append(batch)
    return items


def recorded(path: Path) -> list[pb.BookMessage]:
    return [message for record in RecordingReader(path) for message in record.item.messages]


def play_all(engine: Engine) -> None:
    """Advance an unpaced replay's engine until its recording is played (bounded)."""
    for _ in range(10_000):
        if engine.advance(time.monotonic_ns()) == 0:
            return
    raise AssertionError("the replay never ended")


def same(a: pb.BookMessage, b: pb.BookMessage) -> bool:
    """Equal but for event_time_ns (moved by the replay)."""
    a, b = pb.BookMessage.FromString(a.SerializeToString()), pb.BookMessage.FromString(b.SerializeToString())
    a.event_time_ns = b.event_time_ns = 0
    return a == b


def test_subscribers_at_the_recorded_depth_get_the_recording_and_smaller_depths_verify(tmp_path: Path) -> None:
    path = tmp_path / "r.mdrec"
    write_recording(path, engine_items(200))
    source = ReplaySource(path, speed=None)
    engine = Engine(source=source)
    full = engine.fanout.subscribe(None, MAX_DEPTH)
    small = engine.fanout.subscribe(None, 5)
    play_all(engine)
    truth = recorded(path)
    got = full.take_nowait()
    assert len(got) == len(truth) > 500
    assert all(same(a, b) for a, b in zip(got, truth, strict=True))
    books = {spec.instrument_id: OrderBook(spec.instrument_id, 5) for spec in SPECS}
    derived = small.take_nowait()
    for message in derived:
        apply_message(books[message.instrument_id], message)  # sequence, checksum and digest verified
    full_books = {spec.instrument_id: OrderBook(spec.instrument_id) for spec in SPECS}
    for message in truth:
        apply_message(full_books[message.instrument_id], message)
    for iid, book in books.items():
        assert book.sequence == full_books[iid].sequence
        assert book.bids() == full_books[iid].bids(5) and book.asks() == full_books[iid].asks(5)
    assert [m.sequence for m in derived] == [m.sequence for m in truth]
    assert engine.source.event_counts() == {
        spec.instrument_id: sum(m.instrument_id == spec.instrument_id for m in truth) for spec in SPECS
    }


def test_a_late_subscriber_gets_the_replays_current_book_and_deeper_requests_name_the_recorded_depth(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r20.mdrec"
    engine = Engine(SPECS, seed=5, rate=300.0)
    subscription = engine.fanout.subscribe(None, 20)
    items = [subscription.take_nowait()]
    for step in range(1, 100):
        engine.advance(step * STEP_NS)
        items.append(subscription.take_nowait())
    write_recording(path, items, depth=20)
    replay = Engine(source=ReplaySource(path, speed=None))
    first = replay.fanout.subscribe(None, 20)
    replay.advance(time.monotonic_ns(), max_events=150)
    late = replay.fanout.subscribe(["AAPL"], 20)
    snapshot = late.take_nowait()[0]
    book = OrderBook("AAPL", 20)
    apply_message(book, snapshot)
    assert snapshot.snapshot.reason == pb.SNAPSHOT_REASON_INITIAL
    assert snapshot.sequence == replay.source.books["AAPL"].book.sequence
    assert first.backlog > 0
    with pytest.raises(InvalidRequest, match=r"1\.\.20 \(r20\.mdrec was recorded at depth 20\)"):
        replay.core.subscribe(None, 21)
    with pytest.raises(InvalidRequest, match="recorded at depth 20"):
        replay.core.snapshot("AAPL", 50)


def test_each_pass_of_a_loop_is_a_new_session_starting_with_snapshots(tmp_path: Path) -> None:
    path = tmp_path / "loop.mdrec"
    write_recording(path, engine_items(40))
    truth = recorded(path)
    opening = {m.instrument_id: m.sequence for m in truth if m.WhichOneof("body") == "snapshot"}
    engine = Engine(source=ReplaySource(path, speed=None, loop=True))
    subscription = engine.fanout.subscribe(None, MAX_DEPTH)
    sessions = [engine.fanout.session_id]
    subscription.take_nowait()
    played = 0
    while played < len(truth) - len(opening):  # one pass, without its opening snapshots
        played += engine.advance(time.monotonic_ns(), max_events=len(truth) - len(opening) - played)
    first_pass = subscription.take_nowait()
    assert engine.fanout.session_id == sessions[0]
    engine.advance(time.monotonic_ns(), max_events=1)  # the next pass starts
    sessions.append(engine.fanout.session_id)
    assert sessions[1] != sessions[0]
    second = subscription.take_nowait()
    snapshots = second[: len(opening)]
    assert {m.instrument_id: m.sequence for m in snapshots} == opening
    assert all(m.WhichOneof("body") == "snapshot" for m in snapshots)
    assert same(second[len(opening)], truth[len(opening)])  # then the recording again, from its first update
    assert len(first_pass) == len(truth) - len(opening)


def test_a_recorded_resync_snapshot_reaches_every_depth(tmp_path: Path) -> None:
    path = tmp_path / "resync.mdrec"
    items = engine_items(120, max_backlog=50, take_every=30)  # 90 messages between takes: resyncs
    resyncs = [m for item in items for m in item if m.snapshot.reason == pb.SNAPSHOT_REASON_RESYNC]
    write_recording(path, items)
    engine = Engine(source=ReplaySource(path, speed=None))
    full = engine.fanout.subscribe(None, MAX_DEPTH)
    small = engine.fanout.subscribe(None, 10)
    play_all(engine)
    truth = recorded(path)
    got = full.take_nowait()
    assert len(got) == len(truth) and all(same(a, b) for a, b in zip(got, truth, strict=True))
    assert resyncs, "the recording holds no resync (the test's set-up is wrong)"
    books = {spec.instrument_id: OrderBook(spec.instrument_id, 10) for spec in SPECS}
    derived = small.take_nowait()
    for message in derived:
        apply_message(books[message.instrument_id], message)
    assert sum(m.snapshot.reason == pb.SNAPSHOT_REASON_RESYNC for m in derived) == len(resyncs)


def test_a_recording_that_does_not_verify_stops_the_replay_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.mdrec"
    items = engine_items(60)
    victim = next(m for item in items[5:] for m in item if m.WhichOneof("body") == "update" and m.update.changes)
    victim.update.changes[0].size_lots += 1
    write_recording(path, items)
    engine = Engine(source=ReplaySource(path, speed=None))
    engine.fanout.subscribe(None, MAX_DEPTH)
    with pytest.raises(BadRecording, match=rf"bad\.mdrec: .*{victim.instrument_id}.*not whole"):
        play_all(engine)


def test_a_recording_without_messages_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.mdrec"
    write_recording(path, [])
    with pytest.raises(BadRecording, match="holds no recorded message"):
        ReplaySource(path)
