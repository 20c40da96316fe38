"""The feed playing an exchange, end to end: ``python -m feed_server --source binance|kraken`` (and the recorder,
the replay, the dashboard and ``run.py``) as real processes against the fake exchanges of this package, which run
in the test's event loop on 127.0.0.1 (never the real exchanges). What the feed serves over gRPC and through the
dashboard equals an independent rebuild of the frames the fake played; a lost connection, an update-id gap, a
checksum mismatch and an off-tick price stale the books with the source's reason and heal by themselves.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from websockets.asyncio.client import connect

from feed_server.protocol.levels import Side, Trade
from feed_server.record.format import RecordingReader
from tests.dashboard.conftest import start_dashboard
from tests.exchanges.fake_binance import Drop, FakeBinance, Step, WaitDepth, WaitFor, depth_frame, trade_frame
from tests.exchanges.fake_kraken import FakeKraken
from tests.exchanges.live_support import (
    DecimalBook,
    book_json,
    json_levels,
    live_feed,
    run_command,
    shows,
    to_units,
    until_json,
    watching,
    ws_until,
)
from tests.exchanges.test_binance import BTC_SNAP, ETH_SNAP, MARKETS, btc_frames, eth_frames, plain_rebuild, snap
from tests.exchanges.test_kraken import BTC, BTC_DEEP_ASKS, BTC_DEEP_BIDS
from tests.record.support import verify
from tests.servers import free_port
from tests.test_run import start_run, text_of, wait_for_line
from tests.waiting import eventually, stop_process

SOURCE_STALE = "the feed's source is stale: "
STALE_WITHIN = 2.5  # seconds from the fault to the consumers' stale flag (the brief's ~2 s, plus a loaded machine)
HEAL_WITHIN = 10.0


class Gate:
    """A script step the test opens: the fake plays on once the test has seen what it waits for."""

    def __init__(self) -> None:
        self.open = False

    def step(self) -> WaitFor:
        return WaitFor(lambda: self.open)


@pytest.fixture
async def binance_fake() -> AsyncIterator[FakeBinance]:
    fake = FakeBinance(dict(MARKETS), {}, [])
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def binance_args(fake: FakeBinance, symbols: str = "BTCUSDT,ETHUSDT") -> tuple[str, ...]:
    urls = ("--source-url", fake.ws_url, "--source-rest-url", fake.rest_url)
    return ("--source", "binance", "--symbols", symbols, *urls)


def kraken_args(fake: FakeKraken, symbols: str = "BTC/USD,ETH/USD") -> tuple[str, ...]:
    return ("--source", "kraken", "--symbols", symbols, "--source-url", fake.url)


def kraken_book(fake: FakeKraken, symbol: str, depth: int = 100) -> DecimalBook:
    """The fake's own whole book (its independent rebuild), cut to the feed's depth."""
    book = fake.books[symbol]
    bids = {Decimal(p): Decimal(q) for p, q in book.top("bids", depth)}
    asks = {Decimal(p): Decimal(q) for p, q in book.top("asks", depth)}
    return bids, asks


def assert_clean(log: str) -> None:
    """No traceback and nothing at ERROR in a process's log: the faults of these tests are the exchange's."""
    assert not [line for line in log.splitlines() if " ERROR " in line or "Traceback" in line], log


# -- instruments ----------------------------------------------------------------------------------------------


async def test_binance_instruments_as_listed_by_the_feed(binance_fake: FakeBinance) -> None:
    async with live_feed(*binance_args(binance_fake)) as feed, watching(feed.address) as watched:
        await eventually(lambda: len(watched.subscriber.instruments) == 2, 10, "ListInstruments")
        specs = watched.subscriber.instruments
        assert list(specs) == ["BTC-USDT", "ETH-USDT"]
        btc, eth = specs["BTC-USDT"], specs["ETH-USDT"]
        # units: the printed precision; the order filters travel beside them (ListInstruments' order_* fields)
        assert (btc.kind, btc.tick_size, btc.lot_size) == ("crypto", Decimal("0.00000001"), Decimal("0.00000001"))
        assert (btc.order_tick_size, btc.order_lot_size) == (Decimal("0.01"), Decimal("0.00001"))
        assert (eth.order_tick_size, eth.order_lot_size) == (Decimal("0.01"), Decimal("0.0001"))
        assert watched.subscriber.source.startswith("binance BTCUSDT,ETHUSDT"), watched.subscriber.source


async def test_kraken_instruments_as_listed_by_the_feed(kraken_fake: FakeKraken) -> None:
    async with live_feed(*kraken_args(kraken_fake)) as feed, watching(feed.address) as watched:
        await eventually(lambda: len(watched.subscriber.instruments) == 2, 10, "ListInstruments")
        specs = watched.subscriber.instruments
        assert list(specs) == ["BTC-USD", "ETH-USD"]
        btc, eth = specs["BTC-USD"], specs["ETH-USD"]
        assert (btc.kind, btc.tick_size, btc.lot_size) == ("crypto", Decimal("0.1"), Decimal("0.00000001"))
        assert (eth.kind, eth.tick_size, eth.lot_size) == ("crypto", Decimal("0.01"), Decimal("0.00000001"))
        assert watched.subscriber.source.startswith("kraken BTC/USD,ETH/USD"), watched.subscriber.source


# -- Binance: books, a dropped connection, a gap, an off-tick price ------------------------------------------


async def test_binance_books_over_grpc_and_the_dashboard_then_a_drop_stales_and_heals(
    binance_fake: FakeBinance,
) -> None:
    fake = binance_fake
    start, drop, resume = Gate(), Gate(), Gate()
    btc, eth = btc_frames(), eth_frames()
    again = [
        depth_frame("BTCUSDT", 1050, 1052, [["67250.01", "0.90000"]], []),
        depth_frame("ETHUSDT", 510, 512, [], [["3480.26", "2.0000"]]),
        trade_frame("BTCUSDT", 9003, "67250.01", "0.10000", False),
        depth_frame("BTCUSDT", 1053, 1053, [["67250.00", "0"]], [["67260.00", "1.50000"]]),
    ]
    btc2 = snap(1051, [["67250.01", "0.80000"], ["67250.00", "1.00000"]], [["67250.02", "0.31000"]])
    eth2 = snap(511, [["3480.25", "4.1000"]], [["3480.26", "1.0000"]])
    fake.sessions = [[start.step(), *btc, *eth, drop.step(), Drop()], [resume.step(), *again]]
    fake.snapshots = {"BTCUSDT": [BTC_SNAP, btc2], "ETHUSDT": [ETH_SNAP, eth2]}
    dashboard = None
    async with live_feed(*binance_args(fake)) as feed, watching(feed.address, "BTC-USDT", "ETH-USDT") as watched:
        try:
            dashboard = await asyncio.to_thread(start_dashboard, feed.address)
            start.open = True
            spec = {iid: watched.spec(iid) for iid in ("BTC-USDT", "ETH-USDT")}
            want = {
                "BTC-USDT": plain_rebuild(BTC_SNAP, btc, "BTCUSDT"),
                "ETH-USDT": plain_rebuild(ETH_SNAP, eth, "ETHUSDT"),
            }
            await eventually(
                lambda: (
                    watched.live("BTC-USDT", "ETH-USDT")
                    and all(watched.units(iid) == to_units(want[iid], spec[iid]) for iid in want)
                ),
                10,
                lambda: f"{watched.changes} {watched.units('BTC-USDT')}",
            )
            assert Decimal("67300.00") in want["BTC-USDT"][1]  # a level only the updates made
            await eventually(lambda: len(watched.subscriber.books["BTC-USDT"].trades) == 2, 5, "the trades")
            trades = [trade for _, trade in watched.subscriber.books["BTC-USDT"].trades]
            unit = 10**6  # the fake prints 8 decimals: 0.01 is 10**6 units, 0.00001 is 10**3
            made = [Trade(6725003 * unit, 1000 * 1000, Side.ASK), Trade(6725001 * unit, 20000 * 1000, Side.BID)]
            assert trades == made  # m: the buyer made
            async with httpx.AsyncClient(base_url=dashboard.http, timeout=5.0) as http:
                for iid, book in want.items():
                    got = await until_json(http, iid, shows(book), 10)
                    assert got["stale"] is False and got["reason"] is None

                drop.open = True  # the fake aborts the TCP connection
                dropped = asyncio.get_running_loop().time()
                await eventually(lambda: watched.stale("BTC-USDT") and watched.stale("ETH-USDT"), STALE_WITHIN, "stale")
                for iid in ("BTC-USDT", "ETH-USDT"):
                    reason = watched.subscriber.books[iid].stale_reason or ""
                    assert reason.startswith(SOURCE_STALE + "binance: connection lost"), reason
                    got = await until_json(http, iid, lambda j: j["stale"] is True, STALE_WITHIN)
                    assert "binance: connection lost" in got["reason"], got
                    assert asyncio.get_running_loop().time() - dropped < STALE_WITHIN + 1
                    # the levels are the last verified ones, never a half book
                    assert watched.units(iid) == to_units(want[iid], spec[iid])
                await eventually(lambda: len(fake.ws_paths) == 2, HEAL_WITHIN, "the feed reconnecting")
                # reconnected: live again on the fresh snapshots alone (no event yet)
                fresh = {"BTC-USDT": plain_rebuild(btc2, [], "BTCUSDT"), "ETH-USDT": plain_rebuild(eth2, [], "ETHUSDT")}
                await eventually(
                    lambda: (
                        watched.live("BTC-USDT", "ETH-USDT")
                        and all(watched.units(iid) == to_units(fresh[iid], spec[iid]) for iid in fresh)
                    ),
                    HEAL_WITHIN,
                    lambda: f"{watched.changes}",
                )

                resume.open = True
                want = {
                    "BTC-USDT": plain_rebuild(btc2, again, "BTCUSDT"),
                    "ETH-USDT": plain_rebuild(eth2, again, "ETHUSDT"),
                }
                await eventually(
                    lambda: (
                        watched.live("BTC-USDT", "ETH-USDT")
                        and all(watched.units(iid) == to_units(want[iid], spec[iid]) for iid in want)
                    ),
                    HEAL_WITHIN,
                    lambda: f"{watched.changes}",
                )
                for iid, book in want.items():
                    got = await until_json(http, iid, shows(book, live=True), 10)
                    assert got["reason"] is None
            for iid in ("BTC-USDT", "ETH-USDT"):
                assert watched.transitions(iid) == ["live", "stale", "live"], watched.changes
            assert fake.depth_requests == {"BTCUSDT": 2, "ETHUSDT": 2}
        finally:
            if dashboard is not None:
                assert_clean(await asyncio.to_thread(dashboard.stop))
    assert_clean(feed.log_text())


async def test_binance_gap_resyncs_from_a_new_snapshot(binance_fake: FakeBinance) -> None:
    fake = binance_fake
    start, after = Gate(), Gate()
    after_gap = [
        depth_frame("BTCUSDT", 1040, 1042, [["67249.00", "1.00000"]], []),
        depth_frame("BTCUSDT", 1043, 1044, [["67250.01", "0.10000"]], []),
        depth_frame("BTCUSDT", 1045, 1045, [], [["67251.00", "0"]]),
    ]
    snap2 = snap(1043, [["67250.01", "0.70000"], ["67249.00", "1.00000"]], [["67251.00", "2.00000"]])
    fake.sessions = [
        [start.step(), *btc_frames()[:3], after_gap[0], WaitDepth("BTCUSDT", 2), after.step(), *after_gap[1:]]
    ]
    fake.snapshots = {"BTCUSDT": [BTC_SNAP, snap2]}
    async with live_feed(*binance_args(fake, "BTCUSDT")) as feed, watching(feed.address, "BTC-USDT") as watched:
        await eventually(lambda: "BTC-USDT" in watched.subscriber.books, 10, "subscribed")
        start.open = True
        await eventually(lambda: len(watched.transitions("BTC-USDT")) >= 2, 10, lambda: f"{watched.changes}")
        reason = watched.reasons("BTC-USDT")[-1]
        assert watched.transitions("BTC-USDT")[:2] == ["live", "stale"], watched.changes
        assert reason == SOURCE_STALE + "binance: update ids jumped from 1031 to 1040; fetching a new snapshot"
        after.open = True
        want = to_units(plain_rebuild(snap2, after_gap, "BTCUSDT"), watched.spec("BTC-USDT"))
        await eventually(
            lambda: watched.live("BTC-USDT") and watched.units("BTC-USDT") == want,
            HEAL_WITHIN,
            lambda: f"{watched.changes}",
        )
        assert watched.transitions("BTC-USDT") == ["live", "stale", "live"]
        assert fake.depth_requests == {"BTCUSDT": 2}
    log = feed.log_text()
    assert_clean(log)
    assert "update ids jumped from 1031 to 1040" in log and "BTCUSDT" in log, log


async def test_binance_off_tick_price_stales_that_symbol_only(binance_fake: FakeBinance) -> None:
    fake = binance_fake
    start, both_live, seen_stale = Gate(), Gate(), Gate()
    off_tick = depth_frame("ETHUSDT", 504, 504, [["3480.255000001", "1.0000"]], [])  # more decimals than printed
    btc = btc_frames()
    later = [depth_frame("ETHUSDT", 505, 505, [["3480.24", "0"]], []), *btc[3:]]
    eth2 = snap(504, [["3480.25", "3.0000"], ["3480.24", "0.7000"]], [["3480.40", "10.0000"]])
    script: list[Step] = [start.step(), *btc[:3], *eth_frames(), both_live.step(), off_tick]
    script += [WaitDepth("ETHUSDT", 2), seen_stale.step(), *later]
    fake.sessions = [script]
    fake.snapshots = {"BTCUSDT": [BTC_SNAP], "ETHUSDT": [ETH_SNAP, eth2]}
    async with live_feed(*binance_args(fake)) as feed, watching(feed.address, "BTC-USDT", "ETH-USDT") as watched:
        await eventually(lambda: len(watched.subscriber.books) == 2, 10, "subscribed")
        start.open = True
        eth_before = to_units(plain_rebuild(ETH_SNAP, eth_frames(), "ETHUSDT"), watched.spec("ETH-USDT"))
        await eventually(lambda: watched.live("BTC-USDT", "ETH-USDT") and watched.units("ETH-USDT") == eth_before, 10)
        both_live.open = True
        await eventually(lambda: "stale" in watched.transitions("ETH-USDT"), STALE_WITHIN, lambda: f"{watched.changes}")
        reason = watched.reasons("ETH-USDT")[-1]
        assert reason.startswith(SOURCE_STALE) and "3480.255000001" in reason, reason
        assert [book for iid, book in watched.stale_books if iid == "ETH-USDT"][-1] == eth_before  # nothing of it
        assert watched.live("BTC-USDT")
        seen_stale.open = True
        want_btc = to_units(plain_rebuild(BTC_SNAP, btc, "BTCUSDT"), watched.spec("BTC-USDT"))
        want_eth = to_units(plain_rebuild(eth2, later, "ETHUSDT"), watched.spec("ETH-USDT"))
        await eventually(
            lambda: (
                watched.live("BTC-USDT", "ETH-USDT")
                and watched.units("BTC-USDT") == want_btc
                and watched.units("ETH-USDT") == want_eth
            ),
            HEAL_WITHIN,
            lambda: f"{watched.changes}",
        )
        assert watched.transitions("BTC-USDT") == ["live"]  # never stale once live
        assert watched.transitions("ETH-USDT") == ["live", "stale", "live"]
    assert_clean(feed.log_text())
    lines = [line for line in feed.log_text().splitlines() if "3480.255000001" in line]
    assert len(lines) == 1, feed.log_text()
    assert "ETHUSDT" in lines[0] and "more decimals than the unit 0.00000001 holds" in lines[0], lines


async def test_binance_crossing_update_is_uncrossed_and_consumers_stay_live(binance_fake: FakeBinance) -> None:
    """An update that crosses the book (the ask it crosses removed in a later event): the feed serves the book
    without the crossed ask, the later removal of that ask is harmless, and no consumer faults."""
    fake = binance_fake
    start = Gate()
    btc = btc_frames()[:3]  # the book then: best bid 67250.01, asks 67250.03 67251.00 67255.10
    crossing = [
        depth_frame("BTCUSDT", 1032, 1032, [["67251.00", "0.50000"]], []),  # bid at an ask: crosses two asks
        depth_frame("BTCUSDT", 1033, 1033, [], [["67250.03", "0"], ["67251.00", "0"]]),  # Binance's own removal
        depth_frame("BTCUSDT", 1034, 1034, [["67249.50", "0.07000"]], [["67252.00", "0.25000"]]),
    ]
    fake.sessions = [[start.step(), *btc, *crossing]]
    fake.snapshots = {"BTCUSDT": [BTC_SNAP]}
    async with live_feed(*binance_args(fake, "BTCUSDT")) as feed, watching(feed.address, "BTC-USDT") as watched:
        await eventually(lambda: "BTC-USDT" in watched.subscriber.books, 10, "subscribed")
        start.open = True
        want = to_units(plain_rebuild(BTC_SNAP, [*btc, *crossing], "BTCUSDT"), watched.spec("BTC-USDT"))
        await eventually(
            lambda: watched.live("BTC-USDT") and watched.units("BTC-USDT") == want, 10, lambda: f"{watched.changes}"
        )
        assert watched.transitions("BTC-USDT") == ["live"], watched.changes
        assert watched.subscriber.stats.resyncs == 0
    assert_clean(feed.log_text())


# -- Kraken: books, a checksum mismatch, a dropped connection, an off-tick price -----------------------------


async def test_kraken_books_checksum_mismatch_and_drop(kraken_fake: FakeKraken) -> None:
    fake = kraken_fake
    dashboard = None
    async with live_feed(*kraken_args(fake)) as feed, watching(feed.address, "BTC-USD", "ETH-USD") as watched:
        try:
            dashboard = await asyncio.to_thread(start_dashboard, feed.address)
            await eventually(lambda: watched.live("BTC-USD", "ETH-USD"), 10, lambda: f"{watched.changes}")
            spec = {iid: watched.spec(iid) for iid in ("BTC-USD", "ETH-USD")}
            symbols = {"BTC-USD": "BTC/USD", "ETH-USD": "ETH/USD"}

            def matches() -> bool:
                return all(
                    watched.units(iid) == to_units(kraken_book(fake, s), spec[iid]) for iid, s in symbols.items()
                )

            async with asyncio.timeout(5):
                await fake.update("BTC/USD", bids=[("45284.0", "0.5")], asks=[("45285.2", "0")])
                await fake.trade("BTC/USD", "buy", "45285.2", "0.001")
                await fake.update("ETH/USD", bids=[("3479.99", "2")], asks=[("3480.5", "0.25")])
                await fake.update("BTC/USD", bids=[("45283.5", "0")], asks=[("45287.0", "1.25")])
            await eventually(
                lambda: watched.live("BTC-USD", "ETH-USD") and matches(), 10, lambda: f"{watched.units('BTC-USD')}"
            )
            assert watched.subscriber.books["BTC-USD"].last_trade == Trade(452852, 100000, Side.BID)
            async with httpx.AsyncClient(base_url=dashboard.http, timeout=5.0) as http:
                for iid, symbol in symbols.items():
                    got = await until_json(http, iid, shows(kraken_book(fake, symbol)), 10)
                    assert got["stale"] is False and got["reason"] is None

                # a checksum mismatch on BTC/USD: stale with the reason, resubscribed, live again on a fresh book
                subscribes = fake.subscribes("book", "BTC/USD")
                async with asyncio.timeout(5):
                    await fake.update("BTC/USD", bids=[("45283.0", "1.25")], bad_checksum=True)
                await eventually(
                    lambda: fake.subscribes("book", "BTC/USD") > subscribes, HEAL_WITHIN, "a resubscription"
                )
                await eventually(
                    lambda: watched.live("BTC-USD") and matches(), HEAL_WITHIN, lambda: f"{watched.changes}"
                )
                assert watched.transitions("BTC-USD") == ["live", "stale", "live"], watched.changes
                [reason] = watched.reasons("BTC-USD")[-1:]
                assert reason.startswith(SOURCE_STALE + "kraken: checksum mismatch"), reason
                assert watched.transitions("ETH-USD") == ["live"]

                # the fake cuts every connection: both stale with the reason, then live again by themselves
                async with connect(dashboard.ws("BTC-USD", "depth=100")) as ws:
                    first = await ws_until(ws, lambda _: True, 5)
                    assert first["stale"] is False and shows(kraken_book(fake, "BTC/USD"))(first), first
                    connections = fake.connections
                    fake.drop()
                    got = await ws_until(ws, lambda j: j["stale"] is True, STALE_WITHIN)
                    assert "kraken: connection lost" in got["reason"], got
                    assert shows(kraken_book(fake, "BTC/USD"))(got)  # the last verified levels
                    await ws_until(ws, shows(kraken_book(fake, "BTC/USD"), live=True), HEAL_WITHIN)
                for iid, flips in (
                    ("BTC-USD", ["live", "stale", "live", "stale", "live"]),
                    ("ETH-USD", ["live", "stale", "live"]),
                ):
                    await eventually(partial(watched.flipped, iid, flips), HEAL_WITHIN, lambda: f"{watched.changes}")
                    reason = watched.reasons(iid)[-1]
                    assert reason.startswith(SOURCE_STALE + "kraken: connection lost"), reason
                await eventually(lambda: watched.live("BTC-USD", "ETH-USD"), HEAL_WITHIN, lambda: f"{watched.changes}")
                assert fake.connections > connections
                async with asyncio.timeout(5):
                    await fake.update("ETH/USD", bids=[("3479.98", "3")])
                await eventually(matches, 10, "the books after the reconnection")
                for iid, symbol in symbols.items():
                    got = await until_json(http, iid, shows(kraken_book(fake, symbol), live=True), 10)
        finally:
            if dashboard is not None:
                assert_clean(await asyncio.to_thread(dashboard.stop))
    assert_clean(feed.log_text())


async def test_kraken_exchange_down_then_back_on_the_same_port(kraken_fake: FakeKraken) -> None:
    fake = kraken_fake
    port = int(fake.url.split(":")[2].split("/")[0])
    async with live_feed(*kraken_args(fake, "BTC/USD")) as feed, watching(feed.address, "BTC-USD") as watched:
        await eventually(lambda: watched.live("BTC-USD"), 10, lambda: f"{watched.changes}")
        await fake.stop()  # the exchange goes away: its connections close, new ones are refused
        await eventually(lambda: watched.stale("BTC-USD"), STALE_WITHIN, lambda: f"{watched.changes}")
        reason = watched.subscriber.books["BTC-USD"].stale_reason or ""
        assert reason.startswith(SOURCE_STALE + "kraken: "), reason
        await asyncio.sleep(1.5)  # nothing must happen during it: no book served while the exchange is away
        assert watched.stale("BTC-USD"), watched.changes
        async with asyncio.timeout(5):
            await fake.update("BTC/USD", bids=[("45284.0", "0.5")])  # the book moved meanwhile (no subscriber)
            await fake.start(port)
        want = to_units(kraken_book(fake, "BTC/USD"), watched.spec("BTC-USD"))
        await eventually(
            lambda: watched.live("BTC-USD") and watched.units("BTC-USD") == want, 15, lambda: f"{watched.changes}"
        )
    assert_clean(feed.log_text())


async def test_kraken_off_tick_price_stales_that_symbol_only(kraken_fake: FakeKraken) -> None:
    fake = kraken_fake
    async with live_feed(*kraken_args(fake)) as feed, watching(feed.address, "BTC-USD", "ETH-USD") as watched:
        await eventually(lambda: watched.live("BTC-USD", "ETH-USD"), 10, lambda: f"{watched.changes}")
        spec = {iid: watched.spec(iid) for iid in ("BTC-USD", "ETH-USD")}
        btc_before = watched.units("BTC-USD")
        async with asyncio.timeout(5):
            await fake.book_frame("BTC/USD", [{"price": "45283.55", "qty": "1"}], [])
            await fake.update("ETH/USD", bids=[("3479.99", "2")])
        await eventually(
            lambda: "stale" in watched.transitions("BTC-USD")[1:], STALE_WITHIN, lambda: f"{watched.changes}"
        )
        reason = watched.reasons("BTC-USD")[-1]
        assert reason.startswith(SOURCE_STALE) and "45283.55 has more decimals than the unit 0.1" in reason, reason
        want_eth = to_units(kraken_book(fake, "ETH/USD"), spec["ETH-USD"])
        await eventually(lambda: watched.units("ETH-USD") == want_eth, 5, "ETH updated")
        await eventually(lambda: watched.live("BTC-USD"), HEAL_WITHIN, lambda: f"{watched.changes}")
        assert watched.units("BTC-USD") == btc_before == to_units(kraken_book(fake, "BTC/USD"), spec["BTC-USD"])
        assert watched.transitions("ETH-USD") == ["live"]
        async with asyncio.timeout(5):
            await fake.update("ETH/USD", bids=[("3479.97", "4")])
        want_eth = to_units(kraken_book(fake, "ETH/USD"), spec["ETH-USD"])
        await eventually(
            lambda: watched.units("ETH-USD") == want_eth and watched.live("ETH-USD"), 5, "ETH still updating"
        )
    assert_clean(feed.log_text())
    lines = [line for line in feed.log_text().splitlines() if "45283.55" in line]
    assert len(lines) == 1, feed.log_text()
    assert "BTC/USD" in lines[0], lines


# -- the command line ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("symbols", ["NOPE", "BTCUSDT,NOPE"])
async def test_binance_unknown_symbol_exits_1_naming_it(binance_fake: FakeBinance, symbols: str) -> None:
    code, _, err, took = await run_command("-m", "feed_server", "--port", "0", *binance_args(binance_fake, symbols))
    assert code == 1, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, err
    assert errors[0].startswith("python -m feed_server: error: binance: unknown symbol NOPE "), err
    assert took < 10


async def test_binance_unknown_symbol_stderr_is_one_line(binance_fake: FakeBinance) -> None:
    code, _, err, _ = await run_command("-m", "feed_server", "--port", "0", *binance_args(binance_fake, "NOPE"))
    assert code == 1
    assert len(err.splitlines()) == 1, err


@pytest.mark.parametrize("symbols", ["NOPE/USD", "BTC/USD,NOPE/USD"])
async def test_kraken_unknown_symbol_exits_1_naming_it(kraken_fake: FakeKraken, symbols: str) -> None:
    code, _, err, took = await run_command("-m", "feed_server", "--port", "0", *kraken_args(kraken_fake, symbols))
    assert code == 1, err
    assert len(err.splitlines()) == 1 and err.startswith("python -m feed_server: error: ") and "NOPE/USD" in err, err
    assert took < 10


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--source", "binance"), "--symbols"),
        (("--symbols", "BTCUSDT"), "--symbols"),
        (
            ("--source", "kraken", "--symbols", "BTC/USD", "--source-rest-url", "http://127.0.0.1:1"),
            "--source-rest-url",
        ),
        (("--source", "kraken", "--symbols", "BTC/USD", "--source-renew-after", "5"), "--source-renew-after"),
        (("--source", "coinbase", "--symbols", "BTC-USD", "--source-rest-weight-share", "0.5"), "binance only"),
        (("--source", "binance", "--symbols", "BTCUSDT", "--source-rest-weight-share", "2"), "(0, 1]"),
        (("--source", "binance", "--symbols", "BTCUSDT", "--source-renew-after", "0"), "--source-renew-after"),
        (("--source-renew-after", "5",), "--source-renew-after"),
    ],
)
async def test_bad_flag_combinations_are_one_line_exit_1(args: tuple[str, ...], words: str) -> None:
    code, _, err, _ = await run_command("-m", "feed_server", "--port", "0", *args)
    assert code == 1, err
    assert len(err.splitlines()) == 1 and words in err, err


async def test_sigterm_stops_the_feed_at_once_while_its_source_is_down_or_hangs() -> None:
    """SIGTERM while the Binance snapshot request hangs (held, never answered), and while Kraken is unreachable:
    exit 0 within a few seconds either way."""
    binance = FakeBinance(dict(MARKETS), {"BTCUSDT": [BTC_SNAP]}, [[]], hold_snapshots=True)
    await binance.start()
    try:
        async with live_feed(*binance_args(binance, "BTCUSDT")) as feed, watching(feed.address) as watched:
            await eventually(lambda: len(binance.ws_paths) == 1, 10, "the feed connecting")
            await eventually(lambda: binance.depth_asked.get("BTCUSDT", 0) >= 1, 10, "the snapshot request held")
            assert watched.stale("BTC-USDT") or "BTC-USDT" not in watched.subscriber.books
            feed.process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(feed.process.wait, 10.0)
            assert code == 0, feed.log_text()
    finally:
        await binance.stop()

    kraken = FakeKraken([BTC])
    kraken.seed("BTC/USD", BTC_DEEP_BIDS, BTC_DEEP_ASKS)
    await kraken.start()
    try:
        async with live_feed(*kraken_args(kraken, "BTC/USD")) as feed, watching(feed.address, "BTC-USD") as watched:
            await eventually(lambda: watched.live("BTC-USD"), 10, lambda: f"{watched.changes}")
            await kraken.stop()
            await eventually(lambda: watched.stale("BTC-USD"), STALE_WITHIN, "stale")
            await asyncio.sleep(0.5)  # the state under test: SIGTERM lands while it keeps reconnecting, refused
            feed.process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(feed.process.wait, 10.0)
            assert code == 0, feed.log_text()
    finally:
        await kraken.stop()


# -- recording a live source, and replaying it ---------------------------------------------------------------


async def test_a_live_source_records_and_replays(kraken_fake: FakeKraken, tmp_path: Path) -> None:
    fake = kraken_fake
    path = tmp_path / "kraken.mdrec"

    async def trade_on() -> None:
        n = 0
        while True:
            n += 1
            await fake.update("BTC/USD", bids=[("45270.0", f"{n % 7 + 1}")], asks=[("45300.0", f"{n % 5 + 1}")])
            await fake.update("ETH/USD", bids=[("3478.0", f"0.{n % 9 + 1}")])
            await asyncio.sleep(0.05)  # the fake market's pace

    async with live_feed(*kraken_args(fake)) as feed, watching(feed.address, "BTC-USD", "ETH-USD") as watched:
        await eventually(lambda: watched.live("BTC-USD", "ETH-USD"), 10, lambda: f"{watched.changes}")
        updates = asyncio.create_task(trade_on(), name="kraken-updates")
        try:
            recorder = asyncio.create_task(
                run_command(
                    "-m", "feed_server.record", "--address", feed.address, "--out", str(path), "--duration", "3"
                )
            )
            header: list[int] = []  # the recording's size once its header is on disk

            def recorded() -> bool:  # a frame of records after the header: live books are in the recording
                size = path.stat().st_size if path.exists() else 0
                if not header:
                    header.extend([size] if size else [])
                    return False
                return size > header[0]

            await eventually(recorded, 15, "a frame of records on disk")
            fake.drop()  # the recording holds the source going stale and its books coming back
            await eventually(lambda: "stale" in watched.transitions("BTC-USD"), STALE_WITHIN, "stale")
            await eventually(lambda: watched.live("BTC-USD", "ETH-USD"), HEAL_WITHIN, lambda: f"{watched.changes}")
            async with asyncio.timeout(25):
                code, out, err, _ = await recorder
        finally:
            updates.cancel()
            await asyncio.gather(updates, return_exceptions=True)
        assert code == 0, err
        assert out.startswith("recorded "), out

    code, out, err, _ = await run_command("-m", "feed_server.record", "--info", str(path))
    assert code == 0, err
    assert "BTC-USD" in out and "ETH-USD" in out, out
    reader = RecordingReader(path)
    records = list(reader)
    assert {i.instrument_id for i in reader.header.instruments} == {"BTC-USD", "ETH-USD"}
    (final,) = verify(records).values()  # every message verifies (sequence, checksum, digest)
    assert len(records) > 10
    stale = [m for r in records for m in r.item.messages if m.source_stale]
    assert stale and all("kraken: connection lost" in m.source_stale_reason for m in stale), stale[:3]
    async with live_feed("--replay", str(path), "--speed", "max") as replay, watching(replay.address) as watched:
        await eventually(
            lambda: (
                set(watched.subscriber.books) == {"BTC-USD", "ETH-USD"}
                and all(watched.subscriber.books[iid].book == final[iid] for iid in final)
            ),
            15,
            lambda: f"{watched.changes}",
        )


# -- run.py -------------------------------------------------------------------------------------------------


async def test_run_py_with_a_kraken_source(kraken_fake: FakeKraken) -> None:
    port, feed_port = free_port(), free_port()
    process, output = start_run(
        "--source", "kraken", "--symbols", "BTC/USD", "--source-url", kraken_fake.url,
        "--port", str(port), "--feed-port", str(feed_port),
    )  # fmt: skip
    children: list[psutil.Process] = []
    try:
        line = await asyncio.to_thread(wait_for_line, process, output, "Dashboard:", 60.0)
        assert line.startswith(f"Dashboard: http://127.0.0.1:{port}/")
        children = psutil.Process(process.pid).children(recursive=True)
        bids, asks = json_levels(kraken_book(kraken_fake, "BTC/USD"))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as http:
            listed = await http.get("/api/instruments")
            [item] = listed.json()
            assert (item["instrument_id"], item["kind"], item["tick_size"], item["lot_size"]) == (
                "BTC-USD",
                "crypto",
                0.1,
                1e-8,
            ), item
            got: dict[str, Any] = await until_json(
                http, "BTC-USD", lambda j: j["bids"] == bids and j["asks"] == asks and not j["stale"], 15
            )
            assert got["reason"] is None
            assert (await book_json(http, "BTC-USD"))["stale"] is False
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 30.0)
        assert process.returncode == 0, text_of(output)
    finally:
        await asyncio.to_thread(stop_process, process, also=children)
        output.close()
