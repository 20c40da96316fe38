"""The order book model: applying, refusing and reading; every test runs once per implementation (the
pure-Python reference and the compiled one)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feed_server.protocol import book as pure
from feed_server.protocol.book import LevelChange, Side
from feed_server.protocol.checksum import book_digest, compute_checksum
from feed_server.protocol.errors import (
    BookError,
    ChecksumMismatch,
    CrossedBook,
    DigestMismatch,
    InvalidMessage,
    SequenceGap,
)
from tests.protocol.books import BOOKS, COMPILED_MISSING

OrderBook = pure.OrderBook  # the implementation under test, set by the fixture below


@pytest.fixture(autouse=True, scope="module", params=["python", "compiled"])
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test of this module runs against each implementation (module-scoped: hypothesis' tests take it)."""
    global OrderBook
    if request.param not in BOOKS:
        pytest.skip(COMPILED_MISSING or "")
    OrderBook = BOOKS[request.param]  # type: ignore[assignment]
    yield request.param
    OrderBook = pure.OrderBook


def make_book(depth: int = 100) -> pure.OrderBook:
    book = OrderBook("TEST", depth)
    book.apply_snapshot(10, [(100, 5), (99, 7), (97, 1)], [(102, 3), (103, 4)])
    return book


def test_reading_the_book() -> None:
    book = make_book()
    assert book.best_bid() == (100, 5)
    assert book.best_ask() == (102, 3)
    assert book.spread() == 2
    assert book.mid() == 101.0
    assert book.bids() == [(100, 5), (99, 7), (97, 1)]
    assert book.asks(1) == [(102, 3)]
    assert book.size_at(Side.BID, 99) == 7
    assert book.size_at(Side.ASK, 99) == 0
    assert book.sequence == 10


def test_update_changes_adds_and_removes_levels_together() -> None:
    book = make_book()
    changes = [LevelChange(Side.BID, 101, 2), LevelChange(Side.ASK, 102, 0), LevelChange(Side.BID, 97, 0)]
    expected = compute_checksum([(101, 2), (100, 5), (99, 7)], [(103, 4)])
    book.apply_update(11, changes, expected)
    assert book.bids() == [(101, 2), (100, 5), (99, 7)]
    assert book.asks() == [(103, 4)]
    assert book.sequence == 11
    assert book.mid() == 102.0


def test_a_skipped_sequence_is_refused_and_the_book_kept() -> None:
    book = make_book()
    before = book.bids(), book.asks()
    with pytest.raises(SequenceGap) as info:
        book.apply_update(12, [LevelChange(Side.BID, 101, 1)])
    assert (info.value.expected, info.value.received) == (11, 12)
    assert (book.bids(), book.asks(), book.sequence) == (*before, 10)


def test_a_wrong_checksum_is_refused_and_the_book_rolled_back() -> None:
    book = make_book()
    before = book.bids(), book.asks()
    with pytest.raises(ChecksumMismatch) as info:
        book.apply_update(11, [LevelChange(Side.BID, 101, 1), LevelChange(Side.BID, 100, 0)], checksum=12345)
    assert info.value.expected == 12345
    assert (book.bids(), book.asks(), book.sequence) == (*before, 10)
    assert book.checksum() == compute_checksum(*before)


def test_a_crossed_result_is_refused_and_the_book_rolled_back() -> None:
    book = make_book()
    before = book.bids(), book.asks()
    with pytest.raises(CrossedBook) as info:
        book.apply_update(11, [LevelChange(Side.BID, 102, 1)])
    assert (info.value.best_bid, info.value.best_ask) == (102, 102)
    assert (book.bids(), book.asks(), book.sequence) == (*before, 10)


def test_crossed_or_mismatching_snapshots_are_refused() -> None:
    book = make_book()
    with pytest.raises(CrossedBook):
        book.apply_snapshot(20, [(105, 1)], [(104, 1)])
    with pytest.raises(ChecksumMismatch):
        book.apply_snapshot(20, [(100, 1)], [(104, 1)], checksum=1)
    with pytest.raises(InvalidMessage):
        book.apply_snapshot(20, [(100, 0)], [(104, 1)])
    assert book.sequence == 10 and book.best_bid() == (100, 5)


def test_updates_need_a_snapshot_first_and_reject_negative_sizes() -> None:
    with pytest.raises(InvalidMessage):
        OrderBook("T").apply_update(1, [])
    book = make_book()
    with pytest.raises(InvalidMessage):
        book.apply_update(11, [LevelChange(Side.BID, 101, 1), LevelChange(Side.ASK, 110, -1)])
    assert book.size_at(Side.BID, 101) == 0


def test_heartbeat_moves_the_sequence_and_checks_the_checksum() -> None:
    book = make_book()
    book.apply_heartbeat(11, book.checksum())
    assert book.sequence == 11
    with pytest.raises(ChecksumMismatch):
        book.apply_heartbeat(12, book.checksum() ^ 1)
    with pytest.raises(SequenceGap):
        book.apply_heartbeat(13)
    assert book.sequence == 11


def test_all_refusals_share_the_book_error_base() -> None:
    for cls in (SequenceGap, ChecksumMismatch, CrossedBook, InvalidMessage):
        assert issubclass(cls, BookError)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(1, 40), st.integers(0, 5)), max_size=200),
    st.integers(1, 15),
)
def test_the_cached_checksum_always_equals_a_fresh_one(moves: list[tuple[bool, int, int]], depth: int) -> None:
    """However levels come and go, checksum() equals the checksum computed from scratch."""
    book = OrderBook("T", depth)
    book.apply_snapshot(0, [], [])
    n = min(depth, 10)
    for seq, (is_bid, price, size) in enumerate(moves, start=1):
        side, at = (Side.BID, price) if is_bid else (Side.ASK, price + 40)
        if seq % 2:
            book.set_level(side, at, size)
            book.sequence = seq
        else:
            book.apply_update(seq, [LevelChange(side, at, size)])
        assert book.checksum() == compute_checksum(book.bids(n), book.asks(n))


def test_updates_take_plain_tuples_with_the_wires_side_numbers_and_count_the_levels_they_change() -> None:
    book = make_book()
    changes = [(1, 101, 2), (2, 103, 4), (1, 97, 0), (2, 110, 0)]  # a new level, one unchanged, one gone, a no-op
    expected = compute_checksum([(101, 2), (100, 5), (99, 7)], [(102, 3), (103, 4)])
    assert book.apply_update(11, changes, expected) == 2
    assert book.bids() == [(101, 2), (100, 5), (99, 7)] and book.asks() == [(102, 3), (103, 4)]
    assert book.apply_update(12, [(Side.ASK, 103, 4)]) == 0  # nothing changed, yet the sequence moves on
    assert book.sequence == 12


def test_an_unknown_side_refuses_the_whole_update() -> None:
    book = make_book()
    before = book.bids(), book.asks(), book.checksum(), book.digest()
    with pytest.raises(InvalidMessage, match="unknown side 3"):
        book.apply_update(11, [(1, 101, 2), (2, 102, 0), (3, 104, 1)])
    assert (book.bids(), book.asks(), book.checksum(), book.digest(), book.sequence) == (*before, 10)


Move = tuple[bool, int, int]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.tuples(st.booleans(), st.integers(1, 30), st.integers(0, 4)), max_size=8), st.booleans()),
        max_size=40,
    ),
    st.integers(1, 15),
)
def test_messages_of_several_changes_verified_or_refused_keep_the_book_exact(
    messages: list[tuple[list[Move], bool]], depth: int
) -> None:
    """Net changes of several events in one message, each message verified (checksum and digest) or refused whole
    (a wrong digest): the book, its checksum and its digest always equal those of the true book."""
    book = OrderBook("T", depth)
    truth = OrderBook("T", depth)
    book.apply_snapshot(0, [], [], checksum=truth.checksum(), digest=0)
    truth.sequence = 0
    n = min(depth, 10)
    for moves, corrupt in messages:
        changes = {(is_bid, price if is_bid else price + 30): size for is_bid, price, size in moves}
        nxt = OrderBook("T", depth)
        nxt.apply_snapshot(0, truth.bids(), truth.asks())
        for (is_bid, price), size in changes.items():
            nxt.set_level(Side.BID if is_bid else Side.ASK, price, size)
        if nxt.is_crossed():
            continue
        wire = [(1 if is_bid else 2, price, size) for (is_bid, price), size in changes.items()]
        if corrupt:
            with pytest.raises(DigestMismatch):
                book.apply_update(truth.sequence + 1, wire, nxt.checksum(), nxt.digest() ^ 1)
        else:
            book.apply_update(truth.sequence + 1, wire, nxt.checksum(), nxt.digest())
            truth = nxt
            truth.sequence = book.sequence
        assert (book.bids(), book.asks()) == (truth.bids(), truth.asks())
        assert book.checksum() == compute_checksum(truth.bids(n), truth.asks(n))
        assert book.digest() == book_digest(truth.bids(), truth.asks())
