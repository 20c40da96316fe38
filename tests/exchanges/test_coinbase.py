"""Coinbase Advanced Trade: the pure core (metadata units, frames, sequence numbers, one product's book, trades) and
the adapter in process against a real local server (tests/exchanges/fake_coinbase.py) that plays Coinbase's frames.
Every expected book is an independent rebuild: plain Decimal dicts divided by the units written out here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

import pytest

from feed_server.protocol.levels import Level, LevelChange, Side, Trade
from feed_server.server.exchanges.adapter import SourceUnavailable
from feed_server.server.exchanges.coinbase import CoinbaseAdapter
from feed_server.server.exchanges.coinbase_book import (
    CoinbaseError,
    Frame,
    L2Level,
    ProductBook,
    RawTrade,
    SequenceCheck,
    parse_frame,
    parse_l2_event,
    parse_trade,
    spec_from_product,
)
from tests.exchanges.fake_coinbase import TIME, TIME_NS, TRADE_TIME_NS, FakeCoinbase, FakeProduct
from tests.waiting import eventually

# BTC-USD: prices to the cent, sizes to the satoshi. ETH-USD: its metadata prints a price with 3 decimals and a
# minimum size with 5, so its units (0.001, 0.00001) are finer than its order filters (0.01, 0.0001).
BTC = FakeProduct("BTC-USD", "BTC", "USD", price="67250.01", quote_increment="0.01", base_increment="0.00000001")
ETH = FakeProduct(
    "ETH-USD", "ETH", "USD", price="3480.125", quote_increment="0.01", base_increment="0.0001", base_min_size="0.00022"
)

UNITS = {"BTC-USD": (Decimal("0.01"), Decimal("0.00000001")), "ETH-USD": (Decimal("0.001"), Decimal("0.00001"))}
BTC_BIDS = [("67250.00", "0.50000000"), ("67249.99", "1.25"), ("67249.50", "0.06317902")]
BTC_OFFERS = [("67250.01", "0.1"), ("67250.50", "2"), ("67251.00", "0.00000001")]
ETH_BIDS = [("3480.12", "1.5"), ("3480.115", "0.12345"), ("3480.00", "10")]  # off the filters, on the units
ETH_OFFERS = [("3480.13", "0.5"), ("3480.50", "3.0001")]
SEEDS = {"BTC-USD": (BTC_BIDS, BTC_OFFERS), "ETH-USD": (ETH_BIDS, ETH_OFFERS)}

UnitBook = tuple[dict[int, int], dict[int, int]]


def expected(fake: FakeCoinbase, product_id: str) -> UnitBook:
    """The fake's own book in units, by plain Decimal division (every value must be a whole number of units)."""
    tick, lot = UNITS[product_id]
    out: list[dict[int, int]] = []
    for side in ("bid", "offer"):
        levels: dict[int, int] = {}
        for price, quantity in fake.books[product_id][side].items():
            ticks, lots = price / tick, Decimal(quantity) / lot
            assert ticks == int(ticks) and lots == int(lots), (price, quantity)
            levels[int(ticks)] = int(lots)
        out.append(levels)
    return out[0], out[1]


def units(texts: str) -> tuple[Decimal, ...]:
    return tuple(Decimal(text) for text in texts.split())


def l2(*levels: tuple[str, str, str]) -> list[L2Level]:
    return [L2Level(Side.BID if side == "bid" else Side.ASK, price, qty) for side, price, qty in levels]


# -- metadata -------------------------------------------------------------------------------------------------


def test_spec_units_are_the_finest_printed_precision_and_the_filters_are_the_increments() -> None:
    eth = spec_from_product(ETH.metadata())
    assert (eth.instrument_id, eth.display_name, eth.kind) == ("ETH-USD", "ETH / USD (Coinbase)", "crypto")
    assert (eth.tick_size, eth.lot_size) == (Decimal("0.001"), Decimal("0.00001"))
    assert (str(eth.order_tick_size), str(eth.order_lot_size)) == ("0.01", "0.0001")
    btc = spec_from_product(BTC.metadata())
    assert (btc.tick_size, btc.lot_size) == (Decimal("0.01"), Decimal("0.00000001"))
    padded = {**BTC.metadata(), "quote_increment": "0.01000000", "price_increment": "10", "base_max_size": "3400"}
    spec = spec_from_product(padded)
    assert spec.tick_size == Decimal("0.00000001")  # the trailing zeros Coinbase prints count as precision
    assert (str(spec.order_tick_size), str(spec.order_lot_size)) == ("10", "1E-8")
    assert spec_from_product({**BTC.metadata(), "mid_market_price": "67250.005"}).tick_size == Decimal("0.001")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"product_id": ""}, "without product_id"),
        ({"base_display_symbol": "", "base_currency_id": None}, "no base/quote"),
        ({"base_increment": "0"}, "base_increment"),
        ({"price_increment": "x", "quote_increment": ""}, "price_increment"),
    ],
)
def test_spec_rejects_unusable_metadata(change: dict[str, object], words: str) -> None:
    with pytest.raises(CoinbaseError, match=words):
        spec_from_product({**BTC.metadata(), **change})


# -- frames and sequence numbers ------------------------------------------------------------------------------


def test_frames_are_decoded_or_refused() -> None:
    frame = parse_frame(f'{{"channel": "heartbeats", "timestamp": "{TIME}", "sequence_num": 7, "events": [{{}}]}}')
    assert frame == Frame("heartbeats", 7, TIME_NS, ({},), error=None)
    assert parse_frame('{"type": "error", "message": "Failed to subscribe"}').error == "Failed to subscribe"
    assert parse_frame('{"channel": "l2_data", "sequence_num": true}').sequence_num is None
    with pytest.raises(CoinbaseError, match="not JSON"):
        parse_frame('{"channel": "l2_da')
    with pytest.raises(CoinbaseError, match="not an object"):
        parse_frame("[1, 2]")


def test_sequence_num_must_go_up_by_exactly_one() -> None:
    check = SequenceCheck()
    assert [check.check(n) for n in (5, 6, 7)] == [None, None, None]  # the first may be anything
    assert check.check(9) == "sequence_num jumped from 7 to 9"
    assert check.check(10) is None  # it follows on from the new number
    assert check.check(10) == "sequence_num went from 10 back to 10"
    assert check.check(4) == "sequence_num went from 10 back to 4"


# -- one product's book ---------------------------------------------------------------------------------------


def test_snapshot_then_updates_in_order_with_removals() -> None:
    book = ProductBook("ETH-USD", Decimal("0.001"), Decimal("0.00001"))
    assert book.update(l2(("bid", "3480.12", "1"))) is None  # not live before its snapshot: ignored
    bids, asks = book.snapshot(l2(*(("bid", p, q) for p, q in ETH_BIDS), *(("offer", p, q) for p, q in ETH_OFFERS)))
    assert book.live
    assert bids == [(3480120, 150000), (3480115, 12345), (3480000, 1000000)]
    assert asks == [(3480130, 50000), (3480500, 300010)]
    changes = book.update(
        l2(("bid", "3480.12", "0"), ("offer", "3480.14", "0.25"), ("bid", "3479.99", "0"), ("offer", "3480.13", "0.5"))
    )
    # the removal of an absent level and an unchanged size are no change at all
    assert changes == [LevelChange(Side.BID, 3480120, 0), LevelChange(Side.ASK, 3480140, 25000)]
    assert book.levels(Side.BID) == [(3480115, 12345), (3480000, 1000000)]
    assert book.levels(Side.ASK) == [(3480130, 50000), (3480140, 25000), (3480500, 300010)]


def test_a_value_beyond_the_precision_faults_the_book_until_its_next_snapshot() -> None:
    book = ProductBook("ETH-USD", Decimal("0.001"), Decimal("0.00001"))
    book.snapshot(l2(("bid", "3480.12", "1"), ("offer", "3480.13", "1")))
    with pytest.raises(CoinbaseError, match=r"ETH-USD: price 3480\.1255 has more decimals") as caught:
        book.update(l2(("bid", "3480.11", "1"), ("bid", "3480.1255", "1")))
    assert caught.value.product_id == "ETH-USD"
    assert not book.live and book.levels(Side.BID) == []  # nothing of it applied, and no book any more
    assert book.update(l2(("bid", "3480.11", "1"))) is None
    for huge in ("99999999999999999999", "1E+30"):  # beyond 64 bits of ticks; beyond Decimal's 28 digits
        with pytest.raises(CoinbaseError, match="too large"):
            book.snapshot(l2(("offer", huge, "1")))
    with pytest.raises(CoinbaseError, match="not a number"):
        book.snapshot(l2(("offer", "3480.13", "lots")))
    assert book.snapshot(l2(("bid", "3480.11", "2"))) == ([(3480110, 200000)], [])
    assert book.live


def test_a_trades_aggressor_is_the_other_side_of_its_maker() -> None:
    book = ProductBook("BTC-USD", Decimal("0.01"), Decimal("0.00000001"))
    buy = parse_trade({"product_id": "BTC-USD", "price": "67250.01", "size": "0.002", "side": "BUY", "time": TIME})
    assert buy == RawTrade("BTC-USD", "67250.01", "0.002", "BUY", TIME_NS)
    assert book.trade(buy) == Trade(6725001, 200000, Side.ASK)  # a resting buy was hit: the taker sold
    sell = RawTrade("BTC-USD", "67250.00", "1", "SELL", None)
    assert book.trade(sell) == Trade(6725000, 100000000, Side.BID)
    with pytest.raises(CoinbaseError, match="BTC-USD: malformed trade") as caught:
        parse_trade({"product_id": "BTC-USD", "price": "1", "size": "1", "side": "buy"})
    assert caught.value.product_id == "BTC-USD"
    with pytest.raises(CoinbaseError, match=r"trade price 67250\.001 has more decimals"):
        book.trade(RawTrade("BTC-USD", "67250.001", "1", "SELL", None))


def test_malformed_l2_events_name_their_product_when_they_can() -> None:
    with pytest.raises(CoinbaseError) as caught:
        parse_l2_event({"type": "update", "updates": []})
    assert caught.value.product_id is None
    ask = {"side": "ask", "price_level": "1", "new_quantity": "1"}  # Coinbase's side is "offer"
    for event in (
        {"type": "update", "product_id": "BTC-USD", "updates": [ask]},
        {"type": "update", "product_id": "BTC-USD", "updates": [{"side": "bid", "price_level": "1"}]},
        {"type": "delta", "product_id": "BTC-USD", "updates": []},
    ):
        with pytest.raises(CoinbaseError, match="BTC-USD: malformed") as caught:
            parse_l2_event(event)
        assert caught.value.product_id == "BTC-USD"


# -- the adapter against the fake exchange ------------------------------------------------------------------


class RecordingSink:
    """Rebuilds every instrument's book from what the adapter hands over, and records the order of events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.books: dict[str, UnitBook] = {}
        self.trades: dict[str, list[Trade]] = {}
        self.times: list[int] = []
        self.called = asyncio.Event()

    def _note(self, kind: str, instrument_id: str, reason: str = "") -> None:
        self.events.append((kind, instrument_id, reason))
        self.called.set()

    def book(self, instrument_id: str, bids: Sequence[Level], asks: Sequence[Level], time_ns: int) -> None:
        assert list(bids) == sorted(bids, reverse=True) and list(asks) == sorted(asks)
        self.books[instrument_id] = (dict(bids), dict(asks))
        self.times.append(time_ns)
        self._note("book", instrument_id)

    def changes(
        self, instrument_id: str, changes: Sequence[LevelChange], trades: Sequence[Trade], time_ns: int
    ) -> None:
        assert [e for e in self.events if e[1] == instrument_id][-1][0] != "stale", "changes on a stale book"
        bids, asks = self.books[instrument_id]
        for change in changes:
            side = bids if change.side is Side.BID else asks
            if change.size:
                side[change.price] = change.size
            else:
                del side[change.price]
        self.trades.setdefault(instrument_id, []).extend(trades)
        self.times.append(time_ns)
        self._note("changes", instrument_id)

    def stale(self, instrument_id: str, reason: str) -> None:
        self._note("stale", instrument_id, reason)

    def count(self, kind: str, instrument_id: str) -> int:
        return sum(1 for event in self.events if event[0] == kind and event[1] == instrument_id)

    def kinds(self, instrument_id: str) -> list[str]:
        return [event[0] for event in self.events if event[1] == instrument_id and event[0] != "changes"]

    def reasons(self, instrument_id: str) -> list[str]:
        return [event[2] for event in self.events if event[0] == "stale" and event[1] == instrument_id]


@pytest.fixture
async def fake() -> AsyncIterator[FakeCoinbase]:
    server = FakeCoinbase([BTC, ETH])
    for product_id, (bids, offers) in SEEDS.items():
        server.seed(product_id, bids, offers)
    async with asyncio.timeout(5):
        await server.start()
    try:
        yield server
    finally:
        await server.stop()


def adapter_for(
    fake: FakeCoinbase, products: Sequence[str] = ("BTC-USD", "ETH-USD"), **options: float
) -> CoinbaseAdapter:
    settings: dict[str, float] = dict(
        backoff_initial=0.05, backoff_max=0.2, resync_initial=0.05, resync_max=0.2, silence_timeout=5.0
    )
    settings.update(options)
    return CoinbaseAdapter(
        products, fake.ws_url, fake.rest_url, rng=random.Random(7), open_timeout=2.0, http_timeout=2.0, **settings
    )


@contextlib.asynccontextmanager
async def running(adapter: CoinbaseAdapter, *wait_for: str, read: bool = True) -> AsyncIterator[RecordingSink]:
    """``adapter.run`` on a RecordingSink (``read``: its instruments first), until ``wait_for``'s books arrived."""
    if read:
        async with asyncio.timeout(5):
            await adapter.instruments()
    sink = RecordingSink()
    task = asyncio.create_task(adapter.run(sink), name="coinbase-under-test")
    try:
        await eventually(lambda: all(product in sink.books for product in wait_for), 5.0)
        yield sink
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(5):
                await task


@pytest.fixture
async def both(fake: FakeCoinbase) -> AsyncIterator[RecordingSink]:
    """The adapter running for BTC-USD and ETH-USD, both books received."""
    async with running(adapter_for(fake), "BTC-USD", "ETH-USD") as sink:
        yield sink


async def test_instruments_are_read_from_the_products_endpoint(fake: FakeCoinbase) -> None:
    adapter = adapter_for(fake, ["btc-usd", "ETH-USD"])
    async with asyncio.timeout(5):
        btc, eth = await adapter.instruments()
    assert fake.rest_requests == ["/api/v3/brokerage/market/products?product_ids=BTC-USD&product_ids=ETH-USD"]
    assert (btc.instrument_id, btc.display_name, eth.instrument_id) == ("BTC-USD", "BTC / USD (Coinbase)", "ETH-USD")
    assert (btc.tick_size, btc.lot_size, btc.order_tick_size, btc.order_lot_size) == units("0.01 1E-8 0.01 1E-8")
    assert (eth.tick_size, eth.lot_size, eth.order_tick_size, eth.order_lot_size) == units("0.001 1E-5 0.01 0.0001")
    assert (adapter.name, adapter.max_depth) == ("coinbase", 100)
    assert adapter.description == f"coinbase BTC-USD,ETH-USD ({fake.ws_url})"


async def test_unknown_product_or_unreachable_rest_is_source_unavailable(fake: FakeCoinbase) -> None:
    with pytest.raises(SourceUnavailable, match=r"^coinbase: unknown product NOPE-USD \(not in the answer of "):
        async with asyncio.timeout(5):
            await adapter_for(fake, ["BTC-USD", "NOPE-USD"]).instruments()
    fake.reject_unknown = True  # the list answers 404: each product is asked alone to name the unknown one
    with pytest.raises(SourceUnavailable, match=r"^coinbase: unknown product NOPE-USD \(HTTP 404 from "):
        async with asyncio.timeout(5):
            await adapter_for(fake, ["BTC-USD", "NOPE-USD"]).instruments()
    gone, rest = adapter_for(fake, ["BTC-USD"]), fake.rest_url
    await fake.stop()
    with pytest.raises(SourceUnavailable, match=f"^coinbase: cannot reach {rest}"):
        async with asyncio.timeout(5):
            await gone.instruments()


async def test_books_follow_updates_and_trades(fake: FakeCoinbase, both: RecordingSink) -> None:
    sink = both
    [conn] = fake.connections
    assert [(r["type"], r["channel"], r["product_ids"]) for r in conn.requests] == [
        ("subscribe", channel, ["BTC-USD", "ETH-USD"]) for channel in ("level2", "market_trades", "heartbeats")
    ]
    assert sink.books == {"BTC-USD": expected(fake, "BTC-USD"), "ETH-USD": expected(fake, "ETH-USD")}
    async with asyncio.timeout(5):
        await fake.update("BTC-USD", bids=[("67250.00", "0"), ("67249.98", "3")], offers=[("67250.01", "0.15")])
        await fake.trade("BTC-USD", "SELL", "67250.01", "0.05")  # a resting sell was lifted: a buyer aggressed
        await fake.update("ETH-USD", offers=[("3480.125", "0.00001")])
        await fake.trade("ETH-USD", "BUY", "3480.115", "0.12345")
        await fake.heartbeat()
    await eventually(lambda: len(sink.trades.get("ETH-USD", [])) == 1, 5.0)
    assert sink.books == {"BTC-USD": expected(fake, "BTC-USD"), "ETH-USD": expected(fake, "ETH-USD")}
    assert sink.trades == {  # the market_trades snapshot (history) was not passed on
        "BTC-USD": [Trade(6725001, 5000000, Side.BID)],
        "ETH-USD": [Trade(3480115, 12345, Side.ASK)],
    }
    assert set(sink.times) == {TIME_NS, TRADE_TIME_NS}
    assert sink.count("stale", "BTC-USD") == sink.count("stale", "ETH-USD") == 0


async def test_a_sequence_gap_stales_every_product_and_resubscribes_level2(
    fake: FakeCoinbase, both: RecordingSink
) -> None:
    sink = both
    [conn] = fake.connections
    last = conn.sequence - 1
    fake.skip()
    async with asyncio.timeout(5):
        await fake.update("BTC-USD", bids=[("67249.00", "4")])  # lost in the gap: the fresh snapshot holds it
    await eventually(lambda: sink.count("book", "BTC-USD") == 2 and sink.count("book", "ETH-USD") == 2, 5.0)
    for product in ("BTC-USD", "ETH-USD"):
        assert sink.kinds(product) == ["book", "stale", "book"]
        assert sink.reasons(product) == [f"coinbase: sequence_num jumped from {last} to {last + 2}; resubscribing"]
        assert sink.books[product] == expected(fake, product)
    resubscriptions = [(r["type"], r["channel"], r["product_ids"]) for r in conn.requests[3:]]
    assert resubscriptions == [(kind, "level2", ["BTC-USD", "ETH-USD"]) for kind in ("unsubscribe", "subscribe")]
    fake.skip(-1)  # a repeated sequence_num is a fault as well
    async with asyncio.timeout(5):
        await fake.heartbeat()
    await eventually(lambda: sink.count("book", "BTC-USD") == 3 and sink.count("book", "ETH-USD") == 3, 5.0)
    assert "went from" in sink.reasons("ETH-USD")[-1] and "back to" in sink.reasons("ETH-USD")[-1]


async def test_a_value_beyond_the_precision_stales_that_product_only_and_a_later_snapshot_heals(
    fake: FakeCoinbase, both: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    sink = both
    caplog.set_level(logging.WARNING, logger="feed_server.server.exchanges.coinbase")
    async with asyncio.timeout(5):
        await fake.update("ETH-USD", bids=[("3480.1255", "1")], apply=False)  # 4 decimals: the unit is 0.001
        await fake.update("BTC-USD", bids=[("67249.99", "0.75")])
    await eventually(lambda: sink.count("book", "ETH-USD") == 2 and sink.count("changes", "BTC-USD") == 1, 5.0)
    assert sink.kinds("ETH-USD") == ["book", "stale", "book"] and sink.kinds("BTC-USD") == ["book"]
    [reason] = sink.reasons("ETH-USD")
    assert reason == "coinbase: ETH-USD: price 3480.1255 has more decimals than the unit 0.001 holds; resubscribing"
    assert sink.books == {"BTC-USD": expected(fake, "BTC-USD"), "ETH-USD": expected(fake, "ETH-USD")}
    lines = [r.getMessage() for r in caplog.records if "3480.1255" in r.getMessage()]
    assert len(lines) == 1 and "ETH-USD" in lines[0], lines
    assert fake.asked("subscribe", "level2", "ETH-USD") == 2 and fake.asked("subscribe", "level2", "BTC-USD") == 1


async def test_a_fault_that_repeats_is_paced_and_logged_once(
    fake: FakeCoinbase, caplog: pytest.LogCaptureFixture
) -> None:
    """Every snapshot of ETH-USD holds a value beyond its precision: the resubscriptions back off (never a tight
    loop), the consumers see one stale, the log one line; once the book is whole again it heals."""
    caplog.set_level(logging.WARNING, logger="feed_server.server.exchanges.coinbase")
    fake.books["ETH-USD"]["bid"][Decimal("3480.1111")] = "1"
    async with running(adapter_for(fake, resync_initial=0.2, resync_max=0.4), "BTC-USD") as sink:
        start = time.monotonic()
        await eventually(lambda: fake.asked("subscribe", "level2", "ETH-USD") >= 4, 5, "three paced resubscriptions")
        assert time.monotonic() - start > 0.3  # three paced retries after the first (a loop takes milliseconds)
        assert sink.kinds("ETH-USD") == ["stale"]
        assert len([r for r in caplog.records if "3480.1111" in r.getMessage()]) == 1
        del fake.books["ETH-USD"]["bid"][Decimal("3480.1111")]
        await eventually(lambda: "ETH-USD" in sink.books, 5.0)
        assert sink.books["ETH-USD"] == expected(fake, "ETH-USD")
        assert sink.kinds("BTC-USD") == ["book"]


async def test_an_error_frame_stales_the_products_it_names_or_all(fake: FakeCoinbase, both: RecordingSink) -> None:
    sink = both
    async with asyncio.timeout(5):
        await fake.send_raw('{"type": "error", "message": "failure on ETH-USD"}')
    await eventually(lambda: sink.count("book", "ETH-USD") == 2, 5.0)
    assert sink.reasons("ETH-USD") == ["coinbase: error from the exchange: failure on ETH-USD; resubscribing"]
    assert sink.kinds("BTC-USD") == ["book"]
    async with asyncio.timeout(5):
        await fake.send_raw('{"type": "error", "message": "subscribe or unsubscribe required"}')
    await eventually(lambda: sink.count("book", "BTC-USD") == 2 and sink.count("book", "ETH-USD") == 3, 5.0)
    assert sink.reasons("BTC-USD") == [
        "coinbase: error from the exchange: subscribe or unsubscribe required; resubscribing"
    ]


async def test_a_refused_product_stays_stale_and_its_frames_are_ignored(fake: FakeCoinbase) -> None:
    adapter = adapter_for(fake, resync_initial=0.5, resync_max=1.0)
    async with asyncio.timeout(5):
        await adapter.instruments()
    del fake.products["ETH-USD"]  # Coinbase stops knowing it after start-up: its subscription is an error frame
    async with running(adapter, "BTC-USD", read=False) as sink:
        await eventually(lambda: sink.count("stale", "ETH-USD") >= 1, 5.0)
        assert "unknown product_ids ETH-USD" in sink.reasons("ETH-USD")[0]
        async with asyncio.timeout(5):  # frames for it anyway: not live, nothing passed on
            await fake.message("l2_data", [{"type": "update", "product_id": "ETH-USD", "updates": []}])
            trade = {"product_id": "ETH-USD", "price": "3480.12", "size": "1", "side": "BUY", "time": TIME}
            await fake.message("market_trades", [{"type": "update", "trades": [trade]}])
            await fake.update("BTC-USD", bids=[("67249.99", "0.5")])
        await eventually(lambda: sink.count("changes", "BTC-USD") == 1, 5.0)
        assert "ETH-USD" not in sink.books and "ETH-USD" not in sink.trades
        assert sink.books["BTC-USD"] == expected(fake, "BTC-USD")


async def test_silence_drops_the_connection_but_heartbeats_keep_it(fake: FakeCoinbase) -> None:
    fake.heartbeat_interval = 0.1
    async with running(adapter_for(fake, silence_timeout=0.5), "BTC-USD", "ETH-USD") as sink:
        await asyncio.sleep(1.5)  # a quiet market: only heartbeats, three times the silence timeout
        assert sink.kinds("BTC-USD") == sink.kinds("ETH-USD") == ["book"]
        fake.heartbeat_interval = None  # nothing at all now
        await eventually(lambda: sink.count("book", "BTC-USD") == 2 and sink.count("book", "ETH-USD") == 2, 5.0)
        assert sink.reasons("BTC-USD") == ["coinbase: connection lost: no message for 0.5 s; reconnecting"]
        assert len(fake.connections) == 2


async def test_a_dropped_connection_stales_everything_then_rebuilds(fake: FakeCoinbase, both: RecordingSink) -> None:
    sink = both
    fake.drop()
    fake.seed("ETH-USD", ETH_BIDS[1:], ETH_OFFERS)  # the book moved while we were away
    await eventually(lambda: sink.count("book", "BTC-USD") == 2 and sink.count("book", "ETH-USD") == 2, 5.0)
    for product in ("BTC-USD", "ETH-USD"):
        assert sink.kinds(product) == ["book", "stale", "book"]
        [reason] = sink.reasons(product)
        assert reason.startswith("coinbase: connection lost: ") and reason.endswith("; reconnecting"), reason
        assert sink.books[product] == expected(fake, product)
    assert [r["channel"] for r in fake.connections[1].requests] == ["level2", "market_trades", "heartbeats"]


async def test_bad_frames_are_logged_and_ignored_but_a_malformed_l2_event_faults_its_product(
    fake: FakeCoinbase, both: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    sink = both
    caplog.set_level(logging.WARNING, logger="feed_server.server.exchanges.coinbase")
    async with asyncio.timeout(5):
        await fake.send_raw('{"channel": "l2_da')
        await fake.send_raw("[1, 2]")
        await fake.send_raw('{"hello": "world"}')
        await fake.message("candles", [])
        await fake.message("market_trades", [{"type": "update", "trades": "none"}])
        await fake.update("BTC-USD", offers=[("67250.01", "0.3")])
    await eventually(lambda: sink.count("changes", "BTC-USD") == 1, 5.0)
    assert sink.kinds("BTC-USD") == sink.kinds("ETH-USD") == ["book"]
    messages = "\n".join(r.getMessage() for r in caplog.records)
    for words in ("not JSON", "not an object", "without channel", "'candles' ignored", "malformed market_trades"):
        assert words in messages, messages
    async with asyncio.timeout(5):
        bad = {"type": "update", "product_id": "ETH-USD", "updates": [{"side": "bid", "price_level": "3480.12"}]}
        await fake.message("l2_data", [bad])
    await eventually(lambda: sink.count("book", "ETH-USD") == 2, 5.0)
    assert "ETH-USD: malformed l2_data level" in sink.reasons("ETH-USD")[0]
    assert sink.kinds("BTC-USD") == ["book"]
    assert sink.books == {"BTC-USD": expected(fake, "BTC-USD"), "ETH-USD": expected(fake, "ETH-USD")}


async def test_a_subscription_answered_without_a_snapshot_is_tried_again(fake: FakeCoinbase) -> None:
    fake.withhold_snapshots["ETH-USD"] = 2  # the first two level2 subscriptions of ETH-USD bring no snapshot
    fake.heartbeat_interval = 0.1  # the connection stays open meanwhile
    async with running(adapter_for(fake, snapshot_within=0.3), "BTC-USD", "ETH-USD") as sink:
        assert fake.asked("subscribe", "level2", "ETH-USD") == 3
        assert sink.kinds("ETH-USD")[-1] == "book" and sink.books["ETH-USD"] == expected(fake, "ETH-USD")
        assert sink.reasons("ETH-USD")[0] == (
            "coinbase: no level2 snapshot within 0.3 s of subscribing; resubscribing"
        )
        assert sink.kinds("BTC-USD") == ["book"]
