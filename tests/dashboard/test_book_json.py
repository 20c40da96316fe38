"""Book JSON (dashboard.api.book_json): prices and sizes are the floats nearest the exact decimals, however large."""

from __future__ import annotations

from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.api.book_json import BookJsonCache, encode_book
from feed_server.client.subscriber import InstrumentBook
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


def test_an_empty_book_before_its_first_snapshot() -> None:
    spec = InstrumentSpec("X", "X", "equity", Decimal("0.01"), Decimal("1"))
    message = orjson.loads(encode_book(spec, OrderBook("X", 20), stale=False, timestamp_ns=0, depth=10))
    assert message["bids"] == [] and message["asks"] == []
    assert message["sequence"] is None and message["checksum"] is None and message["stale"] is True


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
