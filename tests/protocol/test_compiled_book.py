"""The compiled book against the pure-Python reference: the same inputs through both give the same outputs.

As aiohttp's two HTTP parsers taught (a CVE came from their disagreeing), two implementations of one idea need a
differential test: hypothesis-generated operations (snapshots, updates and heartbeats, valid or broken: gaps,
wrong checksums and digests, crossed books, negative sizes, unknown sides), and the simulator's streams encoded
as the feed sends them and then damaged, go through both; every result (the levels changed, or the refusal's
type and message) and the whole state after each step (levels, checksum, digest, sequence, best levels, mid,
repr) must be equal. Runs with MARKETDATA_PURE_PYTHON=1 too: the variable only chooses what the product runs.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import methodcaller
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feed_server.protocol.book import LevelChange, Side
from feed_server.protocol.core import BookModel
from feed_server.protocol.errors import BookError
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.wire import apply_message, heartbeat_message, snapshot_message, update_message
from feed_server.server.simulator import InstrumentSimulator
from tests.protocol.books import BOOKS, COMPILED_MISSING

pytestmark = pytest.mark.skipif("compiled" not in BOOKS, reason=COMPILED_MISSING or "")

INT64 = 2**63 - 1


def state(book: BookModel) -> tuple[Any, ...]:
    """Everything a consumer can read of a book."""
    return (
        book.bids(),
        book.asks(),
        book.checksum(),
        book.digest(),
        book.sequence,
        book.best_bid(),
        book.best_ask(),
        book.spread(),
        book.mid(),
        book.is_crossed(),
        book.level_count(Side.BID),
        book.level_count(Side.ASK),
        book.bids(3),
        book.asks(0),
        repr(book),
    )


def test_books_of_either_implementation_are_equal_when_their_levels_are() -> None:
    python, compiled = BOOKS["python"]("X", 10), BOOKS["compiled"]("X", 10)
    for book in (python, compiled):
        book.apply_snapshot(1, [(100, 5), (99, 2)], [(101, 3)])
    assert python == compiled and compiled == python and not python != compiled
    compiled.apply_update(2, [(1, 99, 0)])
    assert python != compiled and compiled != python
    other: object = "X"
    assert compiled != BOOKS["compiled"]("Y", 10) and compiled != other


def outcome(action: Callable[[BookModel], object], book: BookModel) -> tuple[str, object]:
    """What one step did: its result, or the refusal's type and message."""
    try:
        return "ok", action(book)
    except BookError as exc:
        return type(exc).__name__, str(exc)


class Pair:
    """The same book in both implementations, driven together and compared after every step."""

    def __init__(self, depth: int) -> None:
        self.python = BOOKS["python"]("X", depth)
        self.compiled = BOOKS["compiled"]("X", depth)

    def step(self, action: Callable[[BookModel], object]) -> tuple[str, object]:
        expected = outcome(action, self.python)
        assert outcome(action, self.compiled) == expected
        assert state(self.compiled) == state(self.python)
        return expected


prices = st.integers(-50, 50) | st.sampled_from([-INT64, INT64, 0, 10**12])
sizes = st.integers(-1, 6) | st.sampled_from([INT64, 10**15])
sides = st.sampled_from([1, 2, Side.BID, Side.ASK, 0, 3])
changes = st.lists(st.tuples(sides, prices, sizes), max_size=12)
levels = st.lists(st.tuples(prices, st.integers(0, 6) | st.just(INT64)), max_size=25)
values = st.none() | st.just("right") | st.integers(0, 2**32 - 1)  # a checksum or digest: absent, right, any
steps = st.one_of(
    st.tuples(st.just("snapshot"), st.integers(0, 3), st.tuples(levels, levels), values, values),
    st.tuples(st.just("update"), st.integers(-1, 2), changes, values, values),
    st.tuples(st.just("heartbeat"), st.integers(-1, 2), st.none(), values, values),
    # (set_level is unchecked, for the simulator's own valid levels: no negative sizes)
    st.tuples(st.just("set_level"), st.integers(0, 0), st.tuples(st.sampled_from(list(Side)), prices,
                                                                  st.integers(0, 6)), values, values),
)


def right_values(pair: Pair, kind: str, body: Any) -> tuple[int, int]:
    """The checksum and digest the step's result would have (from a scratch pure book; right for a valid step)."""
    scratch = BOOKS["python"]("X", pair.python.depth)
    if kind == "snapshot":
        for side, side_levels in zip((Side.BID, Side.ASK), body, strict=True):
            for price, size in side_levels:
                if size > 0:
                    scratch.set_level(side, price, size)
        return scratch.checksum(), scratch.digest()
    for side, side_levels in ((Side.BID, pair.python.bids()), (Side.ASK, pair.python.asks())):
        for price, size in side_levels:  # (set_level may have left the book crossed: no snapshot checks here)
            scratch.set_level(side, price, size)
    for side, price, size in body if kind == "update" else ():
        if side in (1, 2) and size >= 0:
            scratch.set_level(Side(side), price, size)
    return scratch.checksum(), scratch.digest()


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 15), st.lists(steps, max_size=30))
def test_every_operation_gives_the_same_result_and_book_in_both(depth: int, script: list[tuple[Any, ...]]) -> None:
    pair = Pair(depth)
    for kind, offset, body, checksum, digest in script:
        right = right_values(pair, kind, body)
        stated = [right[i] if value == "right" else value for i, value in enumerate((checksum, digest))]
        sequence = (pair.python.sequence or 0) + offset
        if kind == "snapshot":
            pair.step(methodcaller("apply_snapshot", sequence, body[0], body[1], *stated))
        elif kind == "update":
            pair.step(methodcaller("apply_update", sequence, body, *stated))
        elif kind == "heartbeat":
            pair.step(methodcaller("apply_heartbeat", sequence, *stated))
        else:
            pair.step(methodcaller("set_level", *body))


def feed_stream(seed: int, depth: int, count: int) -> list[pb.BookMessage]:
    """The simulator's messages for one instrument as the feed encodes them: a snapshot, then updates and
    heartbeats, each with the checksum and digest of the true book at ``depth`` after it."""
    spec = DEFAULT_INSTRUMENTS[seed % len(DEFAULT_INSTRUMENTS)]
    sim = InstrumentSimulator(spec, seed, 200.0)
    truth = BOOKS["python"](spec.instrument_id, depth)

    def top() -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        return sim.book.bids(depth), sim.book.asks(depth)

    bids, asks = top()
    truth.apply_snapshot(0, bids, asks)
    messages = [snapshot_message(spec.instrument_id, 0, 0, truth.checksum(), bids, asks, digest=truth.digest())]
    for _ in range(count):
        event = sim.next_event()
        if event.heartbeat:
            messages.append(heartbeat_message(spec.instrument_id, event.sequence, event.offset_ns, truth.checksum(),
                                              truth.digest()))
            truth.sequence = event.sequence
            continue
        bids, asks = top()
        wanted = {(Side.BID, p): s for p, s in bids} | {(Side.ASK, p): s for p, s in asks}
        held = {(Side.BID, p): s for p, s in truth.bids()} | {(Side.ASK, p): s for p, s in truth.asks()}
        diff = [LevelChange(side, p, wanted.get((side, p), 0)) for side, p in held.keys() | wanted.keys()
                if held.get((side, p)) != wanted.get((side, p))]
        truth.apply_update(event.sequence, diff)
        messages.append(update_message(spec.instrument_id, event.sequence, event.offset_ns, truth.checksum(), diff,
                                       event.trades, truth.digest()))
    return messages


def received(message: pb.BookMessage) -> Callable[[BookModel], object]:
    """A consumer's step: apply the message as received; its trades."""
    return lambda book: [tuple(trade) for trade in apply_message(book, message)]


def damage(message: pb.BookMessage, how: int) -> pb.BookMessage:
    """A copy of ``message`` broken in one of the ways real streams break."""
    broken = pb.BookMessage()
    broken.CopyFrom(message)
    if how == 0:
        broken.checksum ^= 1
    elif how == 1:
        broken.book_digest ^= 4
    elif how == 2:
        broken.sequence += 1  # a gap
    elif how == 3 and broken.WhichOneof("body") == "update":  # a level that crosses the book
        broken.update.changes.add(side=pb.SIDE_BID, price_ticks=10**9, size_lots=1)
    elif how == 4 and broken.WhichOneof("body") == "update":
        broken.update.changes.add(side=pb.SIDE_ASK, price_ticks=10**9, size_lots=-3)
    elif how == 5 and broken.WhichOneof("body") == "update":
        broken.update.changes.add(side=7, price_ticks=5, size_lots=1)  # type: ignore[arg-type]
    elif how == 6:
        broken.ClearField("body")
    return broken


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 10_000),
    st.sampled_from([1, 5, 10, 20, 100]),
    st.lists(st.tuples(st.integers(0, 399), st.integers(0, 6)), max_size=8, unique_by=lambda d: d[0]),
)
def test_feed_streams_intact_or_damaged_give_the_same_books_and_refusals(
    seed: int, depth: int, damages: list[tuple[int, int]]
) -> None:
    stream = feed_stream(seed, depth, 400)
    for at, how in damages:
        stream[1 + at] = damage(stream[1 + at], how)
    pair = Pair(depth)
    refused = 0
    for message in stream:
        kind, _ = pair.step(received(message))
        refused += kind != "ok"
        if kind == "SequenceGap" or (kind == "InvalidMessage" and pair.python.sequence is None):
            pair.step(methodcaller("apply_snapshot", message.sequence, pair.python.bids(), pair.python.asks()))
    assert refused or not damages or all(how >= 3 for _, how in damages)  # (3-5 change nothing on a heartbeat)
