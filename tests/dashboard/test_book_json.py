"""Book JSON (dashboard.api.book_json): prices and sizes are the floats nearest the exact decimals, however large."""

from __future__ import annotations

from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.api.book_json import BookJsonCache, encode_book
from feed_server.client.sync import InstrumentBook
from feed_server.protocol.book import OrderBook, Side
from feed_server.protocol.instruments import InstrumentSpec

steps = st.sampled_from(["0.01", "0.0001", "0.25", "1", "5", "0.00000001", "100", "0.5"]).map(Decimal)


@settings(max_examples=200, deadline=None)
@given(
    tick=steps,
    lot=steps,
    bid=st.integers(1, 2**62),
    size_units=st.lists(st.integers(1, 2**62), min_size=1, max_size=6),
)
def test_numbers_are_the_floats_nearest_the_exact_decimals(
    tick: Decimal, lot: Decimal, bid: int, size_units: list[int]
) -> None:
    spec = InstrumentSpec("X", "X", "equity", tick, lot)
    book = OrderBook("X", 20)
    for i, units in enumerate(size_units):
        book.set_level(Side.BID, max(1, bid - i), units)
        book.set_level(Side.ASK, bid + 1 + i, units)
    book.sequence = 1
    message = orjson.loads(encode_book(spec, book, stale=False, timestamp_ns=5, depth=20))
    assert message["bids"] == [[float(p * tick), float(s * lot)] for p, s in book.bids()]
    assert message["asks"] == [[float(p * tick), float(s * lot)] for p, s in book.asks()]
    assert message["checksum"] == book.checksum() and message["sequence"] == 1 and message["stale"] is False
    assert message["reason"] is None


def test_an_empty_book_before_its_first_snapshot() -> None:
    spec = InstrumentSpec("X", "X", "equity", Decimal("0.01"), Decimal("1"))
    message = orjson.loads(encode_book(spec, OrderBook("X", 20), stale=False, timestamp_ns=0, depth=10))
    assert message["bids"] == [] and message["asks"] == []
    assert message["sequence"] is None and message["checksum"] is None and message["stale"] is True
    assert isinstance(message["reason"], str) and message["reason"]


def test_the_cache_encodes_each_version_once() -> None:
    spec = InstrumentSpec("X", "X", "equity", Decimal("0.01"), Decimal("1"))
    entry = InstrumentBook(spec, OrderBook("X", 20), stale=False)
    entry.book.set_level(Side.BID, 100, 1)
    cache = BookJsonCache()
    first = cache.get(entry, 10)
    assert cache.get(entry, 10) is first and cache.encodes == 1
    entry.book.set_level(Side.BID, 99, 2)
    entry.version += 1
    second = cache.get(entry, 10)
    assert cache.encodes == 2 and orjson.loads(second)["bids"] == [[1.0, 1.0], [0.99, 2.0]]


def test_reason_is_null_while_live_and_the_given_text_while_stale() -> None:
    spec = InstrumentSpec("X", "X", "equity", Decimal("0.01"), Decimal("1"))
    book = OrderBook("X", 20)
    book.set_level(Side.BID, 100, 1)
    book.sequence = 3
    live = orjson.loads(encode_book(spec, book, stale=False, timestamp_ns=1, depth=10, reason="ignored"))
    assert live["stale"] is False and live["reason"] is None
    text = "sequence gap: expected 4, received 6; <b>resynchronising</b>"
    stale = orjson.loads(encode_book(spec, book, stale=True, timestamp_ns=1, depth=10, reason=text))
    assert stale["stale"] is True and stale["reason"] == text
    assert list(stale) == [
        "type",
        "instrument_id",
        "sequence",
        "timestamp_ns",
        "bids",
        "asks",
        "checksum",
        "stale",
        "reason",
    ]


def test_the_cache_keys_on_the_version_and_the_reason() -> None:
    """The same book version with another reason (the subscriber's problem changed) is another JSON."""
    spec = InstrumentSpec("X", "X", "equity", Decimal("0.01"), Decimal("1"))
    entry = InstrumentBook(spec, OrderBook("X", 20), stale=True)
    entry.book.set_level(Side.BID, 100, 1)
    entry.book.sequence = 7
    cache = BookJsonCache()
    first = cache.get(entry, 10, "feed connection lost: stream ended")
    assert cache.get(entry, 10, "feed connection lost: stream ended") is first and cache.encodes == 1
    second = cache.get(entry, 10, "feed at 127.0.0.1:1 unreachable; reconnecting")
    assert cache.encodes == 2 and orjson.loads(second)["reason"] == "feed at 127.0.0.1:1 unreachable; reconnecting"
    entry.book.sequence = 8  # a heartbeat: the sequence is part of the JSON, so is the version
    entry.version += 1
    third = cache.get(entry, 10, "feed at 127.0.0.1:1 unreachable; reconnecting")
    assert cache.encodes == 3 and orjson.loads(third)["sequence"] == 8
