"""The per-instrument sync state machine (feed_server.client.sync), driven with hand-made message streams."""

from __future__ import annotations

import random
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from feed_server.client.sync import WAITING_FOR_SNAPSHOT, InstrumentBook, InstrumentSync, SyncState
from feed_server.protocol.book import LevelChange, OrderBook, Side, Trade
from feed_server.protocol.errors import ChecksumMismatch, CrossedBook, DigestMismatch, SequenceGap, SnapshotMissing
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.wire import heartbeat_message, snapshot_message, update_message

IID = "TEST"
SPEC = InstrumentSpec(IID, "Test instrument", "equity", Decimal("0.01"), Decimal("1"))
DEPTH = 20

Levels = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]


class Feed:
    """A tiny truthful feed: a random uncrossed book and its messages, with the true book at every sequence."""

    def __init__(self, seed: int = 1, start_seq: int = 1) -> None:
        self.rng = random.Random(seed)
        self.book = OrderBook(IID, DEPTH)
        for i in range(5):
            self.book.set_level(Side.BID, 1000 - i, 10 + i)
            self.book.set_level(Side.ASK, 1001 + i, 10 + i)
        self.seq = start_seq
        self.book.sequence = start_seq
        self.truth: dict[int, Levels] = {start_seq: self.levels()}

    def levels(self) -> Levels:
        return tuple(self.book.bids()), tuple(self.book.asks())

    def snapshot(self, reason: int = pb.SNAPSHOT_REASON_INITIAL) -> pb.BookMessage:
        return snapshot_message(
            IID, self.seq, self.seq * 1000, self.book.checksum(), self.book.bids(), self.book.asks(), reason
        )

    def next(self) -> pb.BookMessage:
        """The next message: usually an update (sometimes with a trade), sometimes a heartbeat."""
        self.seq += 1
        if self.rng.random() < 0.15:
            message = heartbeat_message(IID, self.seq, self.seq * 1000, self.book.checksum())
        else:
            changes = []
            for _ in range(self.rng.randint(1, 3)):
                side = self.rng.choice((Side.BID, Side.ASK))
                price = self.rng.randint(980, 1000) if side is Side.BID else self.rng.randint(1001, 1021)
                size = self.rng.choice((0, self.rng.randint(1, 50)))
                self.book.set_level(side, price, size)
                changes.append(LevelChange(side, price, size))
            trades = [Trade(1000, 2, Side.ASK)] if self.rng.random() < 0.3 else []
            message = update_message(IID, self.seq, self.seq * 1000, self.book.checksum(), changes, trades)
        self.truth[self.seq] = self.levels()
        return message

    def run(self, n: int) -> list[pb.BookMessage]:
        return [self.next() for _ in range(n)]


def new_sync() -> InstrumentSync:
    return InstrumentSync(InstrumentBook(SPEC, OrderBook(IID, DEPTH)))


def levels_of(sync: InstrumentSync) -> Levels:
    return tuple(sync.entry.book.bids()), tuple(sync.entry.book.asks())


def assert_true_book(sync: InstrumentSync, feed: Feed) -> None:
    book = sync.entry.book
    assert book.sequence is not None
    assert levels_of(sync) == feed.truth[book.sequence]


def test_snapshot_then_updates_go_live_and_match_the_truth() -> None:
    feed, sync = Feed(), new_sync()
    assert sync.entry.stale and sync.state is SyncState.WAITING
    step = sync.on_stream(feed.snapshot())
    assert not sync.entry.stale and sync.state is SyncState.LIVE
    assert step.applied == 1 and len(step.notifications) == 2  # the snapshot, then the stale flip
    trades_seen = 0
    for message in feed.run(200):
        step = sync.on_stream(message)
        assert step.fault is None and step.applied == 1 and len(step.notifications) == 1
        assert list(step.notifications[0]) == [
            Trade(t.price_ticks, t.size_lots, Side(t.aggressor)) for t in message.update.trades
        ]
        trades_seen += len(message.update.trades)
        assert_true_book(sync, feed)
    entry = sync.entry
    assert entry.messages_applied == 201
    assert entry.last_event_time_ns == feed.seq * 1000
    assert len(entry.trades) == min(trades_seen, 100)
    assert trades_seen > 0 and entry.last_trade == Trade(1000, 2, Side.ASK)


def test_duplicates_are_ignored_and_counted() -> None:
    feed, sync = Feed(), new_sync()
    sync.on_stream(feed.snapshot())
    messages = feed.run(5)
    for message in messages:
        sync.on_stream(message)
    version = sync.entry.version
    step = sync.on_stream(messages[2])
    assert step.duplicates == 1 and step.applied == 0 and not step.notifications and step.fault is None
    assert sync.entry.version == version and not sync.entry.stale
    assert_true_book(sync, feed)


def test_gap_marks_stale_buffers_and_a_snapshot_repairs() -> None:
    feed, sync = Feed(), new_sync()
    sync.on_stream(feed.snapshot())
    messages = feed.run(10)
    for message in messages[:3]:  # sequences 2..4
        sync.on_stream(message)
    before = levels_of(sync)
    step = sync.on_stream(messages[4])  # sequence 6: 5 is lost
    assert isinstance(step.fault, SequenceGap) and step.request_snapshot
    assert sync.entry.stale and sync.state is SyncState.RESYNCING
    assert len(step.notifications) == 1  # the stale flip
    for message in messages[5:8]:  # 7..9 buffered, book unchanged and stale
        step = sync.on_stream(message)
        assert step.applied == 0 and step.fault is None and not step.request_snapshot
    assert levels_of(sync) == before and sync.entry.book.sequence == 4
    # The snapshot answers at sequence 7 (the server's book at that time).
    truth_feed = Feed()
    truth_feed.run(6)
    step = sync.on_snapshot(truth_feed.snapshot(pb.SNAPSHOT_REASON_REQUEST))
    assert step.resynced and step.fault is None
    assert step.applied == 3  # the snapshot and buffered 8, 9
    assert not sync.entry.stale and sync.state is SyncState.LIVE
    assert sync.entry.book.sequence == 9
    assert_true_book(sync, feed)
    for message in messages[8:]:
        assert sync.on_stream(message).applied == 1
    assert_true_book(sync, feed)


def test_stream_behind_the_snapshot_drops_old_messages_as_they_come() -> None:
    feed, sync = Feed(), new_sync()
    sync.on_stream(feed.snapshot())
    messages = feed.run(12)  # sequences 2..13
    sync.on_stream(messages[1])  # 3 first: gap
    assert sync.state is SyncState.RESYNCING
    snapshot_feed = Feed()
    snapshot_feed.run(8)  # the server is at 9 when it answers
    step = sync.on_snapshot(snapshot_feed.snapshot(pb.SNAPSHOT_REASON_REQUEST))
    assert step.resynced and not sync.entry.stale and sync.entry.book.sequence == 9
    duplicates = 0
    for message in messages[2:]:  # the stream catches up: 4..9 dropped, 10.. applied
        step = sync.on_stream(message)
        duplicates += step.duplicates
        assert step.fault is None
    assert duplicates == 6
    assert sync.entry.book.sequence == 13
    assert_true_book(sync, feed)


def test_a_gap_left_after_the_snapshot_resyncs_again() -> None:
    feed, sync = Feed(), new_sync()
    sync.on_stream(feed.snapshot())
    messages = feed.run(10)
    sync.on_stream(messages[3])  # 5: gap
    sync.on_stream(messages[8])  # 10 buffered
    snapshot_feed = Feed()
    snapshot_feed.run(6)  # snapshot at 7; 8 and 9 are missing
    step = sync.on_snapshot(snapshot_feed.snapshot(pb.SNAPSHOT_REASON_REQUEST))
    assert isinstance(step.fault, SequenceGap) and step.request_snapshot and not step.resynced
    assert sync.entry.stale and sync.state is SyncState.RESYNCING
    final = Feed()
    final.run(10)
    step = sync.on_snapshot(final.snapshot(pb.SNAPSHOT_REASON_REQUEST))
    assert step.resynced and not sync.entry.stale
    assert_true_book(sync, feed)


def test_checksum_mismatch_and_crossed_book_are_detected_and_the_book_is_unchanged() -> None:
    feed, sync = Feed(), new_sync()
    sync.on_stream(feed.snapshot())
    message = feed.next()
    corrupt = pb.BookMessage()
    corrupt.CopyFrom(message)
    corrupt.checksum ^= 1
    before = levels_of(sync)
    step = sync.on_stream(corrupt)
    assert isinstance(step.fault, ChecksumMismatch) and step.request_snapshot and sync.entry.stale
    assert levels_of(sync) == before
    step = sync.on_snapshot(feed.snapshot(pb.SNAPSHOT_REASON_REQUEST))
    assert step.resynced and not sync.entry.stale
    assert_true_book(sync, feed)

    crossed = update_message(IID, feed.seq + 1, 0, 0, [LevelChange(Side.BID, 1010, 5)])
    before = levels_of(sync)
    step = sync.on_stream(crossed)
    assert isinstance(step.fault, CrossedBook) and sync.entry.stale and levels_of(sync) == before


def test_reordered_messages_are_repaired() -> None:
    feed, sync = Feed(), new_sync()
    sync.on_stream(feed.snapshot())
    m = feed.run(6)  # 2..7
    for message in (m[0], m[2], m[1], m[3]):  # 2, 4, 3, 5
        sync.on_stream(message)
    assert sync.entry.stale and sync.entry.book.sequence == 2
    # An answer older than the book (sequence 1) is not applied; the buffered 3..5 are replayed in order.
    step = sync.on_snapshot(Feed().snapshot(pb.SNAPSHOT_REASON_REQUEST))
    assert step.resynced and sync.entry.book.sequence == 5
    assert_true_book(sync, feed)


def test_update_before_any_snapshot_requests_one() -> None:
    feed, sync = Feed(), new_sync()
    feed.run(3)
    step = sync.on_stream(feed.next())
    assert isinstance(step.fault, SnapshotMissing) and step.request_snapshot and sync.entry.stale
    assert sync.on_snapshot(feed.snapshot(pb.SNAPSHOT_REASON_REQUEST)).resynced
    assert_true_book(sync, feed)


def test_stream_snapshots_restart_and_resync_snapshots() -> None:
    feed, sync = Feed(), new_sync()
    sync.on_stream(feed.snapshot())
    for message in feed.run(20):
        sync.on_stream(message)
    # An old copy of a snapshot is a duplicate: never go back in time.
    step = sync.on_stream(Feed().snapshot())
    assert step.duplicates == 1 and sync.entry.book.sequence == 21
    # The server dropped our backlog and sends a RESYNC snapshot further on.
    feed.run(30)
    step = sync.on_stream(feed.snapshot(pb.SNAPSHOT_REASON_RESYNC))
    assert step.fault is None and not sync.entry.stale and sync.entry.book.sequence == 51
    assert_true_book(sync, feed)
    # Connection lost: stale, then a restarted server (sequences from 1 again).
    step = sync.reset()
    assert sync.entry.stale and len(step.notifications) == 1 and sync.state is SyncState.WAITING
    restarted = Feed(seed=7)
    step = sync.on_stream(restarted.snapshot())
    assert not sync.entry.stale and sync.entry.book.sequence == 1
    for message in restarted.run(10):
        assert sync.on_stream(message).applied == 1
    assert_true_book(sync, restarted)


def test_a_stream_snapshot_during_a_resync_ends_it() -> None:
    feed, sync = Feed(), new_sync()
    sync.on_stream(feed.snapshot())
    m = feed.run(5)
    sync.on_stream(m[1])  # gap
    feed.run(3)
    step = sync.on_stream(feed.snapshot(pb.SNAPSHOT_REASON_RESYNC))
    assert step.resynced and sync.state is SyncState.LIVE and not sync.entry.stale
    late = sync.on_snapshot(Feed().snapshot(pb.SNAPSHOT_REASON_REQUEST))  # the request's late answer is ignored
    assert late.applied == 0 and not late.notifications
    assert_true_book(sync, feed)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    faults=st.lists(st.sampled_from(["ok", "ok", "ok", "drop", "dup", "swap", "corrupt"]), min_size=50, max_size=300),
    snapshot_lag=st.integers(0, 5),
)
def test_faulty_streams_never_expose_a_wrong_book(seed: int, faults: list[str], snapshot_lag: int) -> None:
    """Whatever is dropped, duplicated, swapped or corrupted: a book that is not stale is the true book at its
    sequence, and answering the snapshot requests makes it live again."""
    feed, sync = Feed(seed=seed), new_sync()
    stream = [feed.snapshot(), *feed.run(len(faults))]
    delivered: list[pb.BookMessage] = []
    i = 0
    for fault in faults:
        if i >= len(stream):
            break
        message = stream[i]
        if fault == "drop":
            i += 1
            continue
        if fault == "dup":
            delivered += [message, message]
        elif fault == "swap" and i + 1 < len(stream):
            delivered += [stream[i + 1], message]
            i += 1
        elif fault == "corrupt":
            bad = pb.BookMessage()
            bad.CopyFrom(message)
            bad.checksum ^= 0xFFFF
            delivered.append(bad)
        else:
            delivered.append(message)
        i += 1
    delivered += stream[i:]

    pending_request_at: int | None = None
    for position, message in enumerate(delivered):
        step = sync.on_stream(message)
        if step.request_snapshot and pending_request_at is None:
            pending_request_at = position
        # The snapshot answer arrives a few messages later, from the server's book at the time it is served.
        if pending_request_at is not None and position - pending_request_at >= snapshot_lag:
            served_at = max(m.sequence for m in delivered[: position + 1])
            answer = Feed(seed=seed)
            answer.run(served_at - 1)
            pending_request_at = None
            step = sync.on_snapshot(answer.snapshot(pb.SNAPSHOT_REASON_REQUEST))
            if step.request_snapshot:
                pending_request_at = position
        if not sync.entry.stale:
            assert_true_book(sync, feed)
    if sync.entry.stale:
        sync.on_snapshot(feed.snapshot(pb.SNAPSHOT_REASON_REQUEST))
    assert not sync.entry.stale
    assert_true_book(sync, feed)


def test_after_a_reset_a_new_session_snapshot_with_lower_sequences_is_applied() -> None:
    old, sync = Feed(), new_sync()
    sync.on_stream(old.snapshot())
    for message in old.run(50):
        sync.on_stream(message)
    sync.reset()
    restarted = Feed(seed=3)
    snapshot = restarted.snapshot()
    first = restarted.next()
    step = sync.on_stream(first)  # swapped with the snapshot on the new stream
    assert isinstance(step.fault, SnapshotMissing) and sync.state is SyncState.RESYNCING
    step = sync.on_stream(snapshot)
    assert step.resynced and not sync.entry.stale and sync.entry.book.sequence == 2
    assert_true_book(sync, restarted)


def test_the_live_fast_path_applies_in_order_messages_and_declines_the_rest_untouched() -> None:
    feed, sync = Feed(seed=3), new_sync()
    first = feed.next()
    assert sync.on_live_message(first) is None, "not live yet: the general path decides"
    assert sync.entry.book.sequence is None and sync.state.value == "waiting"
    sync.on_stream(feed.snapshot())
    assert sync.on_live_message(feed.snapshot()) is None, "a snapshot goes the general path"
    for message in feed.run(100):
        version = sync.entry.version
        trades = sync.on_live_message(message)
        assert trades is not None
        assert list(trades) == [Trade(t.price_ticks, t.size_lots, Side(t.aggressor)) for t in message.update.trades]
        assert sync.entry.version == version + 1 and sync.entry.last_event_time_ns == message.sequence * 1000
        assert_true_book(sync, feed)
    feed.next()  # lost
    gap = feed.next()
    before, version = levels_of(sync), sync.entry.version
    assert sync.on_live_message(gap) is None, "a gap is declined"
    assert levels_of(sync) == before and sync.entry.version == version and sync.state is SyncState.LIVE
    step = sync.on_stream(gap)
    assert isinstance(step.fault, SequenceGap) and step.request_snapshot and sync.entry.stale


def test_an_unknown_trade_side_refuses_the_whole_message() -> None:
    feed, sync = Feed(seed=4), new_sync()
    sync.on_stream(feed.snapshot())
    before = levels_of(sync)
    bad = update_message(IID, feed.seq + 1, 1, 0, [LevelChange(Side.BID, 999, 7)])
    bad.update.trades.add(price_ticks=1000, size_lots=1, aggressor=7)  # type: ignore[arg-type]
    assert sync.on_live_message(bad) is None
    step = sync.on_stream(bad)
    assert step.fault is not None and step.request_snapshot and sync.entry.stale
    assert levels_of(sync) == before, "the book is left as it was"


def deep_feed(seed: int = 5) -> Feed:
    """A Feed whose book is 15 levels deep on each side: levels 11 to 15 are beyond the checksum's top 10."""
    feed = Feed(seed=seed)
    for i in range(5, 15):
        feed.book.set_level(Side.BID, 1000 - i, 20 + i)
        feed.book.set_level(Side.ASK, 1001 + i, 20 + i)
    feed.truth[feed.seq] = feed.levels()
    return feed


def test_a_wrong_deep_level_is_caught_by_the_book_digest_like_a_checksum_mismatch() -> None:
    feed, sync = deep_feed(), new_sync()
    snapshot = feed.snapshot()
    snapshot.book_digest = feed.book.digest()
    sync.on_stream(snapshot)
    assert not sync.entry.stale
    # The true update changes level 13 of the bids; the copy that arrives changes it to another size. The top 10
    # are untouched, so the checksum still matches: only the digest of the whole book can tell.
    deep = LevelChange(Side.BID, 1000 - 12, 77)
    feed.seq += 1
    feed.book.set_level(deep.side, deep.price, deep.size)
    feed.truth[feed.seq] = feed.levels()
    true_update = update_message(
        IID, feed.seq, feed.seq * 1000, feed.book.checksum(), [deep], digest=feed.book.digest()
    )
    wrong = pb.BookMessage()
    wrong.CopyFrom(true_update)
    wrong.update.changes[0].size_lots = 78
    before, levels_version = levels_of(sync), sync.entry.levels_version
    assert sync.on_live_message(wrong) is None, "declined by the fast path"
    step = sync.on_stream(wrong)
    assert isinstance(step.fault, DigestMismatch) and step.request_snapshot
    assert sync.entry.stale and sync.state is SyncState.RESYNCING
    assert levels_of(sync) == before, "the wrong deep level is never in the book"
    assert sync.entry.stale_reason is not None
    assert sync.entry.stale_reason.startswith("book digest mismatch: ") and "resynchronising" in sync.entry.stale_reason
    assert sync.entry.levels_version == levels_version + 1  # the stale flip
    answer = feed.snapshot(pb.SNAPSHOT_REASON_REQUEST)
    answer.book_digest = feed.book.digest()
    step = sync.on_snapshot(answer)
    assert step.resynced and not sync.entry.stale and sync.entry.stale_reason is None
    assert_true_book(sync, feed)
    # The true message, digest and all, is accepted (a duplicate now: the snapshot covered it).
    assert sync.on_stream(true_update).duplicates == 1


def test_a_stale_book_says_why() -> None:
    feed, sync = Feed(), new_sync()
    assert sync.entry.stale and sync.entry.stale_reason == WAITING_FOR_SNAPSHOT
    sync.on_stream(feed.snapshot())
    assert not sync.entry.stale and sync.entry.stale_reason is None
    messages = feed.run(6)  # 2..7
    for message in messages[:3]:  # 2..4
        sync.on_stream(message)
    sync.on_stream(messages[5])  # 7: 5 and 6 are missing
    assert sync.entry.stale_reason == "sequence gap: expected 5, received 7; resynchronising"
    corrupt = pb.BookMessage()
    corrupt.CopyFrom(feed.next())
    sync.on_snapshot(feed.snapshot(pb.SNAPSHOT_REASON_REQUEST))
    assert sync.entry.stale_reason is None
    corrupt.sequence = feed.seq + 1
    corrupt.checksum ^= 1
    sync.on_stream(corrupt)
    assert sync.entry.stale_reason is not None and sync.entry.stale_reason.startswith("checksum mismatch: message says")
    # A lost connection: the caller's reason; the same reason again changes nothing, another one is shown.
    step = sync.reset("feed connection lost: no message for 2 s")
    assert sync.entry.stale_reason == "feed connection lost: no message for 2 s" and len(step.notifications) == 1
    assert not sync.reset("feed connection lost: no message for 2 s").notifications
    version, levels_version = sync.entry.version, sync.entry.levels_version
    step = sync.reset("feed at x: unknown instrument id 'TEST' (unknown_instrument); retrying every 5 s")
    assert len(step.notifications) == 1 and "unknown_instrument" in (sync.entry.stale_reason or "")
    assert sync.entry.version == version + 1 and sync.entry.levels_version == levels_version + 1
    sync.reset()
    assert sync.entry.stale_reason == WAITING_FOR_SNAPSHOT


def test_levels_version_moves_only_when_what_a_view_shows_changes() -> None:
    feed, sync = Feed(seed=9), new_sync()
    entry = sync.entry
    sync.on_stream(feed.snapshot())
    assert entry.levels_version == 2  # the snapshot, and the stale flag going off

    def applied(message: pb.BookMessage) -> tuple[int, int]:
        version, levels_version = entry.version, entry.levels_version
        assert sync.on_live_message(message) is not None
        return entry.version - version, entry.levels_version - levels_version

    feed.seq += 1
    assert applied(heartbeat_message(IID, feed.seq, 0, feed.book.checksum())) == (1, 0)
    feed.seq += 1
    trade_only = update_message(IID, feed.seq, 0, feed.book.checksum(), [], [Trade(1000, 2, Side.ASK)])
    assert applied(trade_only) == (1, 0)
    feed.seq += 1
    feed.book.set_level(Side.BID, 995, 3)
    change = update_message(IID, feed.seq, 0, feed.book.checksum(), [LevelChange(Side.BID, 995, 3)])
    assert applied(change) == (1, 1)
    feed.seq += 1
    same = update_message(IID, feed.seq, 0, feed.book.checksum(), [LevelChange(Side.BID, 995, 3)])
    assert applied(same) == (1, 0), "a change to the size a level already has changes nothing a view shows"
    # The general path counts alike: a heartbeat after a resync's replay does not move it either.
    feed.seq += 1
    heartbeat = heartbeat_message(IID, feed.seq, 0, feed.book.checksum())
    levels_version = entry.levels_version
    assert sync.on_stream(heartbeat).applied == 1 and entry.levels_version == levels_version
    sync.reset()
    assert entry.levels_version == levels_version + 1  # the stale flip


def test_a_live_book_is_stale_exactly_while_its_source_says_so() -> None:
    feed = Feed(seed=11)
    entry = InstrumentBook(SPEC, OrderBook(IID, DEPTH))
    sync = InstrumentSync(entry)
    sync.on_stream(feed.snapshot())
    assert not entry.stale and sync.state is SyncState.LIVE
    for _ in range(3):
        assert sync.on_live_message(feed.next()) is not None
    # The source loses the exchange: a heartbeat says so, and every message after it while it lasts.
    down = heartbeat_message(IID, feed.seq + 1, 0, feed.book.checksum())
    feed.seq += 1
    down.source_stale, down.source_stale_reason = True, "binance: connection lost; reconnecting"
    assert sync.on_live_message(down) is None  # not the fast path: the stale flag changes
    step = sync.on_stream(down)
    assert step.applied == 1 and step.fault is None and not step.request_snapshot
    assert entry.stale and entry.stale_reason == "the feed's source is stale: binance: connection lost; reconnecting"
    assert sync.state is SyncState.LIVE and entry.book.sequence == feed.seq  # still verified, message by message
    still = heartbeat_message(IID, feed.seq + 1, 0, feed.book.checksum())
    feed.seq += 1
    still.source_stale, still.source_stale_reason = True, "binance: connection lost; reconnecting"
    assert len(sync.on_stream(still).notifications) == 1  # the message only: the same state, no flip
    assert entry.stale
    # The source is whole again: the next message without the flag makes the book live.
    step = sync.on_stream(feed.next())
    assert step.applied == 1 and not entry.stale and entry.stale_reason is None
    assert entry.book.sequence == feed.seq and (tuple(entry.book.bids()), tuple(entry.book.asks())) == feed.levels()


def test_a_snapshot_of_a_stale_source_gives_a_stale_book() -> None:
    feed = Feed(seed=12)
    entry = InstrumentBook(SPEC, OrderBook(IID, DEPTH))
    sync = InstrumentSync(entry)
    snapshot = feed.snapshot()
    snapshot.source_stale, snapshot.source_stale_reason = True, "kraken: resubscribing BTC/USD"
    sync.on_stream(snapshot)
    assert sync.state is SyncState.LIVE and entry.stale
    assert "kraken: resubscribing BTC/USD" in (entry.stale_reason or "")
