"""Kraken v2: the pure book and checksum (Kraken's documented example pinned), and the adapter against a real local
WebSocket server (tests/exchanges/fake_kraken.py) that plays Kraken's frames."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

import pytest

from feed_server.protocol.levels import Level, LevelChange, Side, Trade
from feed_server.server.exchanges.adapter import SourceUnavailable
from feed_server.server.exchanges.kraken import KrakenAdapter
from feed_server.server.exchanges.kraken_book import (
    KrakenBook,
    KrakenBookError,
    KrakenChecksumMismatch,
    kraken_checksum,
    rfc3339_ns,
)
from tests.exchanges.fake_kraken import TIME, TIME_NS, FakeKraken, FakePair
from tests.waiting import eventually

# Kraken's "Spot WebSocket v2 book checksum" guide: this BTC/USD snapshot has checksum 3310070434.
DOC_BIDS = [
    ("45283.5", "0.10000000"), ("45283.4", "1.54582015"), ("45282.1", "0.10000000"), ("45281.0", "0.10000000"),
    ("45280.3", "1.54592586"), ("45279.0", "0.07990000"), ("45277.6", "0.03310103"), ("45277.5", "0.30000000"),
    ("45277.3", "1.54602737"), ("45276.6", "0.15445238"),
]
DOC_ASKS = [
    ("45285.2", "0.00100000"), ("45286.4", "1.54571953"), ("45286.6", "1.54571109"), ("45289.6", "1.54560911"),
    ("45290.2", "0.15890660"), ("45291.8", "1.54553491"), ("45294.7", "0.04454749"), ("45296.1", "0.35380000"),
    ("45297.5", "0.09945542"), ("45299.5", "0.18772827"),
]
DOC_CHECKSUM = 3310070434

BTC = FakePair("BTC/USD", "BTC", "USD", 1, 8, "0.1", "0.00000001")
ETH = FakePair("ETH/USD", "ETH", "USD", 2, 8, "0.01", "0.00000001")
BTC_DEEP_BIDS = [*DOC_BIDS, ("45270.0", "2.5"), ("45269.9", "0.01"), ("45268.0", "1")]
BTC_DEEP_ASKS = [*DOC_ASKS, ("45300.0", "3"), ("45301.1", "0.2"), ("45305.0", "0.00000001")]
ETH_BIDS = [(f"{3480 - i * Decimal('0.25')}", f"{1 + i}.5") for i in range(14)]
ETH_ASKS = [(f"{3480.5 + i * 0.25:.2f}", f"0.{i + 1}") for i in range(14)]


def decimals(levels: Sequence[tuple[str, str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(price), Decimal(qty)) for price, qty in levels]


def element(
    bids: Sequence[tuple[object, object]], asks: Sequence[tuple[object, object]], checksum: int
) -> dict[str, object]:
    return {
        "symbol": "BTC/USD",
        "bids": [{"price": price, "qty": qty} for price, qty in bids],
        "asks": [{"price": price, "qty": qty} for price, qty in asks],
        "checksum": checksum,
        "timestamp": TIME,
    }


def short(levels: Sequence[tuple[str, str]]) -> list[tuple[Decimal, Decimal]]:
    """As a JSON-number frame decoded with parse_float=Decimal gives them: printed short (0.1, 45281)."""
    return [(Decimal(price).normalize(), Decimal(qty).normalize()) for price, qty in levels]


# -- the pure book ------------------------------------------------------------------------------------------------


def test_checksum_pins_krakens_documented_example() -> None:
    assert kraken_checksum(decimals(DOC_ASKS), decimals(DOC_BIDS)) == DOC_CHECKSUM


def test_checksum_pads_short_json_numbers_to_the_pairs_precision() -> None:
    assert kraken_checksum(short(DOC_ASKS), short(DOC_BIDS)) != DOC_CHECKSUM  # why the precision matters
    assert kraken_checksum(short(DOC_ASKS), short(DOC_BIDS), 1, 8) == DOC_CHECKSUM


def test_checksum_covers_only_the_top_ten() -> None:
    deeper = [*decimals(DOC_ASKS), (Decimal("45300.0"), Decimal("9.0"))]
    assert kraken_checksum(deeper, decimals(DOC_BIDS)) == DOC_CHECKSUM


def test_book_snapshot_from_json_numbers_converts_to_ticks_and_lots() -> None:
    def raw(levels: Sequence[tuple[str, str]]) -> str:
        return "[" + ",".join(f'{{"price": {p}, "qty": {q}}}' for p, q in short(levels)) + "]"

    text = f'{{"symbol": "BTC/USD", "checksum": {DOC_CHECKSUM}, "bids": {raw(DOC_BIDS)}, "asks": {raw(DOC_ASKS)}}}'
    data = json.loads(text, parse_float=Decimal)
    assert isinstance(data["bids"][3]["price"], int)  # 45281.0 comes as the JSON int 45281
    book = KrakenBook("BTC/USD", Decimal("0.1"), Decimal("0.00000001"), 10, 1, 8)
    bids, asks = book.apply_snapshot(data)
    assert bids[0] == (452835, 10_000_000) and asks[0] == (452852, 100_000)
    assert bids[3] == (452810, 10_000_000)
    assert [price for price, _ in bids] == sorted((price for price, _ in bids), reverse=True)
    assert [price for price, _ in asks] == sorted(price for price, _ in asks)
    assert len(bids) == len(asks) == 10


def test_book_update_changes_are_the_difference() -> None:
    book = KrakenBook("BTC/USD", Decimal("0.1"), Decimal("0.00000001"), 10)
    book.apply_snapshot(element(DOC_BIDS, DOC_ASKS, DOC_CHECKSUM))
    new_bids = sorted([*DOC_BIDS[:9], ("45284.0", "0.50000000")], key=lambda level: -Decimal(level[0]))
    new_asks = DOC_ASKS[1:]
    checksum = kraken_checksum(decimals(new_asks), decimals(new_bids))
    changes = book.apply_update(element([("45284.0", "0.50000000")], [("45285.2", "0")], checksum))
    assert sorted(changes) == sorted(
        [
            LevelChange(Side.BID, 452840, 50_000_000),
            LevelChange(Side.BID, 452766, 0),  # truncated out of depth 10
            LevelChange(Side.ASK, 452852, 0),
        ]
    )
    assert len(book.levels(Side.BID)) == 10 and len(book.levels(Side.ASK)) == 9


def test_book_checksum_mismatch_and_off_grid_raise() -> None:
    book = KrakenBook("BTC/USD", Decimal("0.1"), Decimal("0.00000001"), 10)
    with pytest.raises(KrakenChecksumMismatch):
        book.apply_snapshot(element(DOC_BIDS, DOC_ASKS, DOC_CHECKSUM + 1))
    book.apply_snapshot(element(DOC_BIDS, DOC_ASKS, DOC_CHECKSUM))
    with pytest.raises(KrakenBookError, match=r"BTC/USD: price 45283.55 has more decimals than the unit 0.1 holds"):
        book.apply_update(element([("45283.55", "1")], [], DOC_CHECKSUM))
    with pytest.raises(KrakenBookError, match="not a number"):
        book.apply_update(element([("45283.5", "abc")], [], DOC_CHECKSUM))


def test_rfc3339_to_ns_is_exact() -> None:
    assert rfc3339_ns(TIME) == TIME_NS
    assert rfc3339_ns("2023-10-06T17:35:55Z") == 1696613755_000000000
    assert rfc3339_ns("not a time") is None


# -- the adapter against the fake exchange ------------------------------------------------------------------------


class RecordingSink:
    """Rebuilds every instrument's book from what the adapter hands over, and records the order of events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.books: dict[str, tuple[dict[int, int], dict[int, int]]] = {}
        self.trades: dict[str, list[Trade]] = {}
        self.called = asyncio.Event()  # set on every call

    def book(self, instrument_id: str, bids: Sequence[Level], asks: Sequence[Level], time_ns: int) -> None:
        assert list(bids) == sorted(bids, reverse=True) and list(asks) == sorted(asks)
        self.books[instrument_id] = (dict(bids), dict(asks))
        self.events.append(("book", instrument_id, ""))
        self.called.set()

    def changes(
        self, instrument_id: str, changes: Sequence[LevelChange], trades: Sequence[Trade], time_ns: int
    ) -> None:
        assert time_ns == TIME_NS
        assert self.events and [e for e in self.events if e[1] == instrument_id][-1][0] != "stale"
        bids, asks = self.books[instrument_id]
        for change in changes:
            side = bids if change.side is Side.BID else asks
            if change.size == 0:
                side.pop(change.price, None)
            else:
                side[change.price] = change.size
        self.trades.setdefault(instrument_id, []).extend(trades)
        self.events.append(("changes", instrument_id, ""))
        self.called.set()

    def stale(self, instrument_id: str, reason: str) -> None:
        self.events.append(("stale", instrument_id, reason))
        self.called.set()

    def count(self, kind: str, instrument_id: str) -> int:
        return sum(1 for event in self.events if event[0] == kind and event[1] == instrument_id)


def expected(fake: FakeKraken, symbol: str, depth: int = 10) -> tuple[dict[int, int], dict[int, int]]:
    """An independent rebuild: the fake's own whole book, cut to the depth, divided by tick and lot."""
    pair = fake.pairs[symbol]
    tick, lot = Decimal(pair.price_increment), Decimal(pair.qty_increment)
    book = fake.books[symbol]
    bids = {int(Decimal(p) / tick): int(Decimal(q) / lot) for p, q in book.top("bids", depth)}
    asks = {int(Decimal(p) / tick): int(Decimal(q) / lot) for p, q in book.top("asks", depth)}
    return bids, asks


@pytest.fixture
def fake(kraken_fake: FakeKraken) -> FakeKraken:
    return kraken_fake


def adapter_for(fake: FakeKraken, symbols: Sequence[str] = ("BTC/USD", "ETH/USD")) -> KrakenAdapter:
    return KrakenAdapter(
        symbols, ws_url=fake.url, depth=10, rng=random.Random(7), backoff_initial=0.05, backoff_max=0.2,
        ping_after=0.2, silence_timeout=1.0, open_timeout=2.0,
    )


@pytest.fixture
async def running(fake: FakeKraken) -> AsyncIterator[tuple[KrakenAdapter, RecordingSink]]:
    adapter = adapter_for(fake)
    async with asyncio.timeout(5):
        specs = await adapter.instruments()
    assert [spec.instrument_id for spec in specs] == ["BTC-USD", "ETH-USD"]
    sink = RecordingSink()
    task = asyncio.create_task(adapter.run(sink), name="kraken-under-test")
    try:
        await eventually(lambda: "BTC-USD" in sink.books and "ETH-USD" in sink.books, 5.0)
        yield adapter, sink
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(5):
                await task


async def test_instruments_reads_exact_specs(fake: FakeKraken) -> None:
    async with asyncio.timeout(5):
        specs = await adapter_for(fake).instruments()
    btc = specs[0]
    assert (btc.instrument_id, btc.display_name, btc.kind) == ("BTC-USD", "BTC / USD (Kraken)", "crypto")
    assert (btc.tick_size, btc.lot_size) == (Decimal("0.1"), Decimal("0.00000001"))
    assert specs[1].tick_size == Decimal("0.01")


async def test_unknown_symbol_and_unreachable_are_source_unavailable(fake: FakeKraken) -> None:
    with pytest.raises(SourceUnavailable, match="unknown symbol 'DOGE/XYZ'"):
        async with asyncio.timeout(5):
            await adapter_for(fake, ["BTC/USD", "DOGE/XYZ"]).instruments()
    url = fake.url
    await fake.stop()
    gone = KrakenAdapter(["BTC/USD"], ws_url=url, open_timeout=1.0)
    with pytest.raises(SourceUnavailable, match=url):
        async with asyncio.timeout(5):
            await gone.instruments()


async def test_books_follow_updates_and_trades(fake: FakeKraken, running: tuple[KrakenAdapter, RecordingSink]) -> None:
    adapter, sink = running
    assert sink.books["BTC-USD"] == expected(fake, "BTC/USD")
    assert sink.books["ETH-USD"] == expected(fake, "ETH/USD")
    assert adapter.max_depth == 10 and adapter.name == "kraken"
    async with asyncio.timeout(5):
        await fake.update("BTC/USD", bids=[("45284.0", "0.5")])  # pushes 45276.6 out of depth 10
        await fake.update("BTC/USD", asks=[("45285.2", "0"), ("45286.4", "0.25")])  # brings 45300.0 in
        await fake.update("BTC/USD", bids=[("45283.5", "0"), ("45283.4", "0"), ("45284.0", "0")])
        await fake.update("ETH/USD", bids=[("3480.10", "7.25")], asks=[("3480.50", "0")])
        await fake.trade("BTC/USD", "buy", "45285.2", "0.001")
        await fake.trade("ETH/USD", "sell", "3480.10", "0.5")
        await fake.heartbeat()
    await eventually(lambda: len(sink.trades.get("ETH-USD", [])) == 1, 5.0)
    assert sink.books["BTC-USD"] == expected(fake, "BTC/USD")
    assert sink.books["ETH-USD"] == expected(fake, "ETH/USD")
    assert sink.trades["BTC-USD"] == [Trade(452852, 100_000, Side.BID)]
    assert sink.trades["ETH-USD"] == [Trade(348010, 50_000_000, Side.ASK)]
    assert sink.count("stale", "BTC-USD") == 0 and sink.count("stale", "ETH-USD") == 0


async def test_checksum_mismatch_stales_then_resubscribes_a_fresh_book(
    fake: FakeKraken, running: tuple[KrakenAdapter, RecordingSink]
) -> None:
    _, sink = running
    async with asyncio.timeout(5):
        await fake.update("BTC/USD", bids=[("45283.0", "1.25")], bad_checksum=True)
    await eventually(lambda: sink.count("book", "BTC-USD") == 2, 5.0)
    btc = [event for event in sink.events if event[1] == "BTC-USD"]
    assert [event[0] for event in btc] == ["book", "stale", "book"]
    assert "kraken: checksum mismatch" in btc[1][2] and btc[1][2].endswith("resubscribing")
    assert fake.subscribes("book", "BTC/USD") == 2
    assert sink.books["BTC-USD"] == expected(fake, "BTC/USD")
    assert sink.count("stale", "ETH-USD") == 0


async def test_dropped_connection_stales_everything_then_rebuilds(
    fake: FakeKraken, running: tuple[KrakenAdapter, RecordingSink]
) -> None:
    _, sink = running
    fake.drop()
    fake.seed("ETH/USD", ETH_BIDS[1:], ETH_ASKS)  # the book moved while we were away
    await eventually(lambda: sink.count("book", "BTC-USD") == 2 and sink.count("book", "ETH-USD") == 2, 5.0)
    for instrument in ("BTC-USD", "ETH-USD"):
        kinds = [event for event in sink.events if event[1] == instrument]
        assert [event[0] for event in kinds] == ["book", "stale", "book"]
        assert kinds[1][2].startswith("kraken: connection lost: ") and kinds[1][2].endswith("reconnecting")
    assert fake.connections >= 3  # instruments(), the first run connection, the reconnection
    assert sink.books["ETH-USD"] == expected(fake, "ETH/USD")


async def test_silent_connection_is_dropped_and_rebuilt(
    fake: FakeKraken, running: tuple[KrakenAdapter, RecordingSink]
) -> None:
    _, sink = running
    fake.muted = True  # no pong, no heartbeat
    await eventually(lambda: sink.count("stale", "BTC-USD") == 1, 5.0)
    assert "no message for" in next(event for event in sink.events if event[0] == "stale")[2]
    fake.muted = False
    await eventually(lambda: sink.count("book", "BTC-USD") == 2 and sink.count("book", "ETH-USD") == 2, 5.0)


async def test_off_tick_price_stales_that_symbol_only(
    fake: FakeKraken, running: tuple[KrakenAdapter, RecordingSink], caplog: pytest.LogCaptureFixture
) -> None:
    _, sink = running
    caplog.set_level(logging.WARNING, logger="feed_server.server.exchanges.kraken")
    async with asyncio.timeout(5):
        await fake.book_frame("BTC/USD", [{"price": "45283.55", "qty": "1"}], [])
        await fake.update("ETH/USD", bids=[("3479.99", "2")])
    await eventually(lambda: sink.count("book", "BTC-USD") == 2 and sink.count("changes", "ETH-USD") == 1, 5.0)
    stale = [event for event in sink.events if event[0] == "stale"]
    assert [event[1] for event in stale] == ["BTC-USD"]
    assert "45283.55 has more decimals than the unit 0.1 holds" in stale[0][2]
    assert any("BTC/USD" in record.getMessage() and "45283.55" in record.getMessage() for record in caplog.records)
    assert sink.books["ETH-USD"] == expected(fake, "ETH/USD")
    assert sink.books["BTC-USD"] == expected(fake, "BTC/USD")


async def test_malformed_frames_stale_the_symbol_and_are_logged(
    fake: FakeKraken, running: tuple[KrakenAdapter, RecordingSink], caplog: pytest.LogCaptureFixture
) -> None:
    _, sink = running
    caplog.set_level(logging.WARNING, logger="feed_server.server.exchanges.kraken")
    async with asyncio.timeout(5):
        await fake.send_raw('{"channel": "book", "type": "upd')  # not JSON: logged, nothing lost yet
        await fake.book_frame("ETH/USD", [{"price": "3480.00"}], [])  # no qty
        await fake.update("BTC/USD", asks=[("45285.2", "0.002")])
    await eventually(lambda: sink.count("book", "ETH-USD") == 2 and sink.count("changes", "BTC-USD") == 1, 5.0)
    assert [event[1] for event in sink.events if event[0] == "stale"] == ["ETH-USD"]
    messages = [record.getMessage() for record in caplog.records]
    assert any("undecodable frame" in message for message in messages)
    assert any("ETH/USD" in message and "malformed level" in message for message in messages)
    assert sink.books["BTC-USD"] == expected(fake, "BTC/USD")


async def test_refused_subscription_stales_only_that_symbol(
    fake: FakeKraken, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="feed_server.server.exchanges.kraken")
    adapter = adapter_for(fake)
    async with asyncio.timeout(5):
        await adapter.instruments()
    del fake.pairs["ETH/USD"]  # Kraken stops knowing the pair after start-up
    sink = RecordingSink()
    task = asyncio.create_task(adapter.run(sink), name="kraken-under-test")
    try:
        await eventually(lambda: "BTC-USD" in sink.books and sink.count("stale", "ETH-USD") >= 1, 5.0)
        assert "subscription refused: Currency pair not supported ETH/USD" in sink.events[-1][2] or any(
            "Currency pair not supported" in event[2] for event in sink.events
        )
        assert any("refused for ETH/USD" in record.getMessage() for record in caplog.records)
        async with asyncio.timeout(5):
            await fake.update("BTC/USD", bids=[("45283.5", "0.2")])
        await eventually(lambda: sink.count("changes", "BTC-USD") == 1, 5.0)
        assert sink.books["BTC-USD"] == expected(fake, "BTC/USD")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(5):
                await task


# -- units from the printed precision: levels off today's increments are normal input -------------------------

NKN = FakePair("NKN/USD", "NKN", "USD", 5, 8, "0.0001", "1")  # increments coarser than what Kraken prints


async def test_levels_off_the_increments_fit_the_precision_units() -> None:
    server = FakeKraken([NKN])
    # a size of 11979.3 where qty_increment is 1, a price of 0.35001 where price_increment is 0.0001
    server.seed("NKN/USD", [("0.35001", "11979.3"), ("0.3500", "500")], [("0.3502", "0.5"), ("0.3510", "2")])
    await server.start()
    try:
        adapter = KrakenAdapter(["NKN/USD"], ws_url=server.url, depth=10, rng=random.Random(7))
        async with asyncio.timeout(5):
            [spec] = await adapter.instruments()
        assert (spec.tick_size, spec.lot_size) == (Decimal("0.00001"), Decimal("0.00000001"))
        assert (spec.order_tick_size, spec.order_lot_size) == (Decimal("0.0001"), Decimal("1"))
        sink = RecordingSink()
        task = asyncio.create_task(adapter.run(sink))
        try:
            await eventually(lambda: "NKN-USD" in sink.books, 5.0)
            async with asyncio.timeout(5):
                await server.update("NKN/USD", bids=[("0.34999", "0.25")])
            book = server.books["NKN/USD"]
            want = tuple(
                {int(Decimal(p) / spec.tick_size): int(Decimal(q) / spec.lot_size) for p, q in book.top(side, 10)}
                for side in ("bids", "asks")
            )
            await eventually(lambda: sink.books["NKN-USD"] == want, 5.0)
            assert sink.books["NKN-USD"][0][35001] == 1_197_930_000_000
            assert sink.count("stale", "NKN-USD") == 0
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                async with asyncio.timeout(5):
                    await task
    finally:
        await server.stop()
