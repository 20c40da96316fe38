"""The one checksum mechanism: its canonical text, literal CRCs, and the chained checksum against a fresh one."""

from __future__ import annotations

from zlib import crc32

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sortedcontainers import SortedDict

from feed_server.protocol.book import OrderBook
from feed_server.protocol.checksum import (
    ASK_SEED,
    BID_SEED,
    LEVEL_TEXT,
    ChainedChecksum,
    book_digest,
    checksum_text,
    compute_checksum,
    level_term,
)
from feed_server.protocol.errors import ChecksumMismatch, DigestMismatch
from feed_server.protocol.levels import LevelChange, Side

TEN_BIDS = [(1000 - i, i + 1) for i in range(15)]
TEN_ASKS = [(1001 + i, i + 1) for i in range(15)]


def test_the_readmes_worked_example() -> None:
    assert checksum_text([(10001, 5), (10000, 2)], [(10003, 7)]) == "10001:5,10000:2|10003:7"
    assert compute_checksum([(10001, 5), (10000, 2)], [(10003, 7)]) == 2453359248


def test_literal_crcs_of_empty_and_one_sided_books() -> None:
    assert checksum_text([], []) == "|"
    assert compute_checksum([], []) == 2343686810
    assert compute_checksum([], [(10003, 7)]) == 2122355301
    assert compute_checksum([(10001, 5)], []) == 3147077328


def test_a_book_checksums_its_top_ten_levels_per_side() -> None:
    book = OrderBook("T", 100)
    book.apply_snapshot(1, TEN_BIDS, TEN_ASKS)
    assert book.checksum() == 3898098428  # CRC32("1000:1,...,991:10|1001:1,...,1010:10")
    shallow = OrderBook("T", 3)
    shallow.apply_snapshot(1, [(100, 5), (99, 7), (97, 1)], [(102, 3), (103, 4)])
    assert shallow.checksum() == 3931355208  # CRC32("100:5,99:7,97:1|102:3,103:4")


def _sides(bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> tuple[SortedDict, SortedDict]:
    return SortedDict({-p: s for p, s in bids}), SortedDict(dict(asks))


def test_the_chained_checksum_rebuilds_only_the_side_a_change_reaches() -> None:
    bids, asks = _sides(TEN_BIDS, TEN_ASKS)
    tracker = ChainedChecksum(10)
    assert tracker.value(bids, asks) == 3898098428
    assert (tracker.bid_edge, tracker.ask_edge) == (-991, 1010)
    # Below the tenth level: neither side is rebuilt, and the value is still right.
    asks[1012] = 99
    tracker.note([LevelChange(Side.ASK, 1012, 99)])
    assert not tracker.bid_stale and not tracker.ask_stale
    assert tracker.value(bids, asks) == 3898098428
    # Inside the top ten of the bids: only the bid side is marked.
    bids[-995] = 50
    tracker.note([LevelChange(Side.BID, 995, 50)])
    assert tracker.bid_stale and not tracker.ask_stale
    assert tracker.value(bids, asks) == compute_checksum([(-k, bids[k]) for k in bids.keys()[:10]], TEN_ASKS[:10])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(1, 30), st.integers(0, 4)), max_size=150),
    st.integers(1, 12),
)
def test_the_chained_checksum_always_equals_a_fresh_one(moves: list[tuple[bool, int, int]], levels: int) -> None:
    """The fan-out's use: changes reported as LevelChanges, any number of levels, any sequence of moves."""
    bids, asks = SortedDict(), SortedDict()
    tracker = ChainedChecksum(levels)
    for is_bid, price, size in moves:
        side, at = (Side.BID, price) if is_bid else (Side.ASK, price + 30)
        book_side, key = (bids, -at) if is_bid else (asks, at)
        if size:
            book_side[key] = size
        else:
            book_side.pop(key, None)
        tracker.note([LevelChange(side, at, size)])
        fresh = compute_checksum([(-k, bids[k]) for k in bids.keys()[:levels]], list(asks.items())[:levels])
        assert tracker.value(bids, asks) == fresh


def test_a_refused_update_leaves_the_checksum_of_the_book_as_it_was() -> None:
    book = OrderBook("T", 100)
    book.apply_snapshot(1, TEN_BIDS, TEN_ASKS)
    before = book.checksum()
    with pytest.raises(ChecksumMismatch):  # the change reaches the top ten: the old checksum cannot match
        book.apply_update(2, [LevelChange(Side.BID, 1000, 55)], checksum=before)
    assert book.checksum() == before == 3898098428
    assert book.bids(1) == [(1000, 1)]


def test_the_book_digest_of_the_worked_example_and_of_an_empty_book() -> None:
    assert book_digest([(10001, 5)], [(10003, 7)]) == 2474228445  # (CRC32("b10001:5") + CRC32("a10003:7")) % 2**32
    assert book_digest([], []) == 0
    assert level_term(Side.BID, 10001, 5) == 4198171710 and level_term(Side.ASK, 10003, 7) == 2571024031


def test_a_wrong_level_below_the_top_ten_fails_the_digest_not_the_checksum() -> None:
    book = OrderBook("T", 100)
    book.apply_snapshot(1, TEN_BIDS, TEN_ASKS, digest=book_digest(TEN_BIDS, TEN_ASKS))
    truth = OrderBook("T", 100)
    truth.apply_snapshot(1, TEN_BIDS, TEN_ASKS)
    truth.apply_update(2, [LevelChange(Side.BID, 986, 40)])  # the 15th bid level: outside the checksum
    wrong = [LevelChange(Side.BID, 986, 41)]
    with pytest.raises(DigestMismatch):
        book.apply_update(2, wrong, checksum=truth.checksum(), digest=truth.digest())
    assert book.bids() == TEN_BIDS and book.sequence == 1  # refused whole
    book.apply_update(2, [LevelChange(Side.BID, 986, 40)], checksum=truth.checksum(), digest=truth.digest())
    assert book.digest() == truth.digest() == book_digest(truth.bids(), truth.asks())
    with pytest.raises(DigestMismatch):
        book.apply_heartbeat(3, checksum=truth.checksum(), digest=truth.digest() ^ 1)
    book.apply_heartbeat(3, checksum=truth.checksum(), digest=truth.digest())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 30), st.integers(0, 4)), max_size=120))
def test_the_digest_kept_change_by_change_equals_a_fresh_one(moves: list[tuple[bool, int, int]]) -> None:
    book = OrderBook("T", 100)
    book.apply_snapshot(0, [], [], digest=0)
    for seq, (is_bid, price, size) in enumerate(moves, start=1):
        side, at = (Side.BID, price) if is_bid else (Side.ASK, price + 30)
        fresh_book = OrderBook("T", 100)
        fresh_book.apply_snapshot(0, book.bids(), book.asks())
        fresh_book.set_level(side, at, size)
        book.apply_update(seq, [LevelChange(side, at, size)], digest=book_digest(fresh_book.bids(), fresh_book.asks()))
        assert book.digest() == book_digest(book.bids(), book.asks())


def test_a_level_text_gives_both_its_checksum_part_and_its_digest_term() -> None:
    assert LEVEL_TEXT % (10001, 5) == b"10001:5"
    assert crc32(LEVEL_TEXT % (10001, 5), BID_SEED) == level_term(Side.BID, 10001, 5) == 4198171710
    assert crc32(LEVEL_TEXT % (10003, 7), ASK_SEED) == level_term(Side.ASK, 10003, 7) == 2571024031


def _fresh(bids: SortedDict, asks: SortedDict, levels: int) -> int:
    return compute_checksum([(-k, bids[k]) for k in bids.keys()[:levels]], list(asks.items())[:levels])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.booleans(), st.integers(1, 30), st.integers(0, 4)), min_size=1, max_size=8),
        max_size=40,
    ),
    st.integers(1, 12),
    st.booleans(),
)
def test_the_checksum_edited_change_by_change_always_equals_a_fresh_one(
    messages: list[list[tuple[bool, int, int]]], levels: int, with_texts: bool
) -> None:
    """The book's use: every change at or better than its side's edge (as the message found it) is an edit, the
    value is read once per message; the levels' texts come from the owner or from the sizes."""
    bids, asks = SortedDict(), SortedDict()
    texts: tuple[dict[int, bytes], dict[int, bytes]] = ({}, {})
    tracker = ChainedChecksum(levels)
    for n, moves in enumerate(messages):
        if n % 7 == 3:
            tracker.bid_stale = True  # now and then a side is read again from the book, as after set_level()
        edges = tracker.bid_edge, tracker.ask_edge
        stale = tracker.bid_stale, tracker.ask_stale
        for is_bid, price, size in moves:
            at = price if is_bid else price + 30
            key = -at if is_bid else at
            side, side_texts = (bids, texts[0]) if is_bid else (asks, texts[1])
            text = LEVEL_TEXT % (at, size) if size else None
            if text is None:
                side.pop(key, None)
                side_texts.pop(key, None)
            else:
                side[key] = size
                side_texts[key] = text
            edge = edges[0] if is_bid else edges[1]
            if not (stale[0] if is_bid else stale[1]) and (edge is None or key <= edge):
                (tracker.edit_bid if is_bid else tracker.edit_ask)(key, text)
        assert tracker.value(bids, asks, texts if with_texts else None) == _fresh(bids, asks, levels)
        assert tracker.bid_keys == list(bids.keys()[:levels]) and tracker.ask_keys == list(asks.keys()[:levels])


def test_an_edit_reads_nothing_from_the_book_unless_the_top_loses_a_level() -> None:
    bids, asks = _sides(TEN_BIDS, TEN_ASKS)
    tracker = ChainedChecksum(10)
    tracker.value(bids, asks)
    empty = SortedDict()  # value() would read the (wrong) empty sides if it read the book
    bids[-1000] = 9  # a size in the top ten
    tracker.edit_bid(-1000, b"1000:9")
    asks[1000] = 1  # a new best ask: the tenth one leaves
    tracker.edit_ask(1000, b"1000:1")
    expected = compute_checksum([(1000, 9), *TEN_BIDS[1:10]], [(1000, 1), *TEN_ASKS[:9]])
    assert tracker.value(empty, empty) == expected
    assert (tracker.bid_edge, tracker.ask_edge) == (-991, 1009)
    del bids[-1000]  # the top loses its best level: the one after its last is read from the book
    tracker.edit_bid(-1000, None)
    assert tracker.bid_edge is None
    assert tracker.value(bids, asks) == compute_checksum(TEN_BIDS[1:11], [(1000, 1), *TEN_ASKS[:9]])
    assert tracker.bid_edge == -990
