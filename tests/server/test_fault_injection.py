"""Fault injection: each kind does to a subscriber's stream what it says, and only the book digest sees ``deep``."""

from __future__ import annotations

import pytest

from feed_server.protocol.book import OrderBook
from feed_server.protocol.errors import DigestMismatch, SequenceGap
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.wire import apply_message
from feed_server.server.engine import Engine
from feed_server.server.faults import DEEP_SIZE_LOTS, FaultInjector

SPEC = DEFAULT_INSTRUMENTS[0]


def _stream(depth: int, messages: int) -> list[pb.BookMessage]:
    """A snapshot and then at least ``messages`` messages (about one event each: 1 ms steps at 1000 events/s)."""
    engine = Engine([SPEC], seed=4, rate=1000.0)
    sub = engine.fanout.subscribe([SPEC.instrument_id], depth)
    out = sub.take_nowait()
    elapsed = 0
    while len(out) <= messages:
        elapsed += 1_000_000
        engine.advance(elapsed)
        out.extend(sub.take_nowait())
    return out


@pytest.mark.parametrize("depth", [10, 100])
def test_a_deep_level_fault_passes_the_checksum_and_fails_the_digest(depth: int) -> None:
    messages = _stream(depth, 300)
    injector = FaultInjector(1.0, ["deep"], seed=1)
    book = OrderBook(SPEC.instrument_id, depth)
    apply_message(book, messages[0])  # snapshots are never faulted
    refused = 0
    for message in messages[1:]:
        faulted = injector.apply([message])
        assert len(faulted) == 1
        if message.HasField("update") and message.update.changes:
            assert faulted[0].checksum == message.checksum  # the checksum alone cannot tell
            assert any(c.size_lots == DEEP_SIZE_LOTS for c in faulted[0].update.changes)
            with pytest.raises(DigestMismatch):
                apply_message(book, faulted[0])
            refused += 1
        apply_message(book, message)  # the book was left as it was: the true message still applies
    assert refused > 100
    assert injector.counts["deep"] == refused


def test_drops_are_gaps_and_counts_add_up() -> None:
    messages = _stream(20, 200)
    injector = FaultInjector(1.0, ["drop"], seed=2)
    assert injector.apply(messages[1:]) == []
    assert injector.counts["drop"] == len(messages) - 1
    book = OrderBook(SPEC.instrument_id, 20)
    apply_message(book, messages[0])
    with pytest.raises(SequenceGap):
        apply_message(book, messages[2])
