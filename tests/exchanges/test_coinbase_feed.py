"""The feed playing Coinbase, end to end: ``python -m feed_server --source coinbase`` as a real process against the
fake Coinbase (tests/exchanges/fake_coinbase.py) in the test's event loop on 127.0.0.1. What the feed serves over
gRPC and through the dashboard's JSON API equals the test's own rebuild of the frames the fake played (plain Decimal
dicts, divided by the units the feed lists); a sequence gap, a lost connection and a value beyond a product's
precision stale the books with the source's reason and heal by themselves; a quiet market on heartbeats stays live.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial

import httpx
import psutil
import pytest

from feed_server.protocol.levels import Side, Trade
from tests.dashboard.conftest import start_dashboard
from tests.exchanges.fake_coinbase import FakeCoinbase, Levels
from tests.exchanges.live_support import DecimalBook, live_feed, run_command, shows, to_units, until_json, watching
from tests.exchanges.test_coinbase import BTC, ETH, SEEDS
from tests.exchanges.test_live_feed import HEAL_WITHIN, SOURCE_STALE, STALE_WITHIN, assert_clean
from tests.servers import free_port
from tests.test_run import start_run, text_of, wait_for_line
from tests.waiting import eventually, stop_process

IDS = ("BTC-USD", "ETH-USD")


@dataclass
class Rebuild:
    """The test's own book of one product: price -> size, exact Decimals, from the levels the fake was told to play."""

    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)

    def apply(self, bids: Levels = (), offers: Levels = ()) -> None:
        for side, levels in ((self.bids, bids), (self.asks, offers)):
            for price, size in levels:
                if Decimal(size) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = Decimal(size)

    @property
    def book(self) -> DecimalBook:
        return dict(self.bids), dict(self.asks)


def seeded() -> dict[str, Rebuild]:
    want = {product: Rebuild() for product in IDS}
    for product, (bids, offers) in SEEDS.items():
        want[product].apply(bids, offers)
    return want


async def play(
    fake: FakeCoinbase, want: dict[str, Rebuild], product: str, bids: Levels = (), offers: Levels = ()
) -> None:
    """One l2_data update played by the fake, and the same levels applied to the test's rebuild."""
    async with asyncio.timeout(5):
        await fake.update(product, bids, offers)
    want[product].apply(bids, offers)


@pytest.fixture
async def coinbase_fake() -> AsyncIterator[FakeCoinbase]:
    fake = FakeCoinbase([BTC, ETH])
    for product, (bids, offers) in SEEDS.items():
        fake.seed(product, bids, offers)
    async with asyncio.timeout(5):
        await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def coinbase_args(
    fake: FakeCoinbase, products: str = "BTC-USD,ETH-USD", rest_url: str | None = None
) -> tuple[str, ...]:
    urls = ("--source-url", fake.ws_url, "--source-rest-url", rest_url or fake.rest_url)
    return ("--source", "coinbase", "--symbols", products, *urls)


async def test_coinbase_instruments_as_listed_by_the_feed(coinbase_fake: FakeCoinbase) -> None:
    async with live_feed(*coinbase_args(coinbase_fake)) as feed, watching(feed.address) as watched:
        await eventually(lambda: len(watched.subscriber.instruments) == 2, 10, "ListInstruments")
        specs = watched.subscriber.instruments
        assert list(specs) == list(IDS)
        btc, eth = specs["BTC-USD"], specs["ETH-USD"]
        assert (btc.kind, btc.display_name) == ("crypto", "BTC / USD (Coinbase)")
        assert (btc.tick_size, btc.lot_size, btc.price_filter, btc.size_filter) == (
            Decimal("0.01"),
            Decimal("0.00000001"),
            Decimal("0.01"),
            Decimal("0.00000001"),
        )
        # ETH-USD's metadata prints a price with 3 decimals and a size with 5: finer units than its filters
        assert (eth.tick_size, eth.lot_size, eth.price_filter, eth.size_filter) == (
            Decimal("0.001"),
            Decimal("0.00001"),
            Decimal("0.01"),
            Decimal("0.0001"),
        )
        assert watched.subscriber.source == f"coinbase BTC-USD,ETH-USD ({coinbase_fake.ws_url})"
    assert_clean(feed.log_text())


async def test_coinbase_books_over_grpc_and_the_dashboard_then_a_gap_and_a_drop(coinbase_fake: FakeCoinbase) -> None:
    fake = coinbase_fake
    want = seeded()
    dashboard = None
    async with live_feed(*coinbase_args(fake)) as feed, watching(feed.address, *IDS) as watched:
        try:
            dashboard = await asyncio.to_thread(start_dashboard, feed.address)
            await eventually(lambda: watched.live(*IDS), 10, lambda: f"{watched.changes}")
            spec = {iid: watched.spec(iid) for iid in IDS}

            def matches() -> bool:
                return all(watched.units(iid) == to_units(want[iid].book, spec[iid]) for iid in IDS)

            await play(
                fake, want, "BTC-USD", bids=[("67250.00", "0"), ("67249.98", "3")], offers=[("67250.01", "0.15")]
            )
            async with asyncio.timeout(5):
                await fake.trade("BTC-USD", "SELL", "67250.01", "0.05")  # the maker sold: a buyer aggressed
            await play(fake, want, "ETH-USD", bids=[("3480.121", "0.00001")], offers=[("3480.50", "0")])
            await play(fake, want, "BTC-USD", offers=[("67252.00", "1.5")])
            await eventually(lambda: watched.live(*IDS) and matches(), 10, lambda: f"{watched.units('BTC-USD')}")
            assert Decimal("67252.00") in want["BTC-USD"].asks  # a level only the updates made
            assert watched.subscriber.books["BTC-USD"].last_trade == Trade(6725001, 5000000, Side.BID)
            async with httpx.AsyncClient(base_url=dashboard.http, timeout=5.0) as http:
                for iid in IDS:
                    got = await until_json(http, iid, shows(want[iid].book), 10)
                    assert got["stale"] is False and got["reason"] is None

                # a sequence_num gap: every product stale with the reason, level2 resubscribed, live again
                [conn] = fake.open_connections
                last = conn.sequence - 1
                fake.skip()
                await play(fake, want, "ETH-USD", bids=[("3480.11", "2")])  # lost, then in the fresh snapshot
                for iid in IDS:
                    await eventually(partial(watched.flipped, iid, ["live", "stale", "live"]), HEAL_WITHIN, "healed")
                    reason = f"coinbase: sequence_num jumped from {last} to {last + 2}; resubscribing"
                    assert watched.reasons(iid) == [SOURCE_STALE + reason], watched.changes
                await eventually(matches, 5, "the books after the resubscription")
                assert [r["type"] for r in conn.requests[3:]] == ["unsubscribe", "subscribe"]

                # the fake cuts the connection: every product stale with the reason, then live again by itself
                fake.drop()
                await eventually(lambda: watched.stale("BTC-USD") and watched.stale("ETH-USD"), STALE_WITHIN, "stale")
                for iid in IDS:
                    got = await until_json(http, iid, lambda j: j["stale"] is True, STALE_WITHIN)
                    assert "coinbase: connection lost" in got["reason"], got
                    assert watched.units(iid) == to_units(want[iid].book, spec[iid])  # the last whole book
                await eventually(lambda: watched.live(*IDS), HEAL_WITHIN, lambda: f"{watched.changes}")
                await play(fake, want, "BTC-USD", bids=[("67249.98", "0")])
                await eventually(matches, 5, "the books after the reconnection")
                for iid in IDS:
                    assert watched.transitions(iid) == ["live", "stale", "live", "stale", "live"], watched.changes
                    assert watched.reasons(iid)[-1].startswith(SOURCE_STALE + "coinbase: connection lost: ")
                    await until_json(http, iid, shows(want[iid].book, live=True), 10)
                assert len(fake.connections) == 2
        finally:
            if dashboard is not None:
                assert_clean(await asyncio.to_thread(dashboard.stop))
    log = feed.log_text()
    assert_clean(log)
    assert len([line for line in log.splitlines() if "sequence_num jumped" in line]) == 1, log


async def test_coinbase_quiet_market_stays_live_on_heartbeats(coinbase_fake: FakeCoinbase) -> None:
    """Only heartbeats for 2.5 s (the book does not move): the consumers never see the source stale."""
    fake = coinbase_fake
    fake.heartbeat_interval = 0.2
    want = seeded()
    async with live_feed(*coinbase_args(fake)) as feed, watching(feed.address, *IDS) as watched:
        await eventually(lambda: watched.live(*IDS), 10, lambda: f"{watched.changes}")
        [conn] = fake.open_connections
        before = conn.sequence
        await asyncio.sleep(2.5)  # the quiet spell under test
        assert conn.sequence - before >= 8  # heartbeats did arrive, and nothing else
        for iid in IDS:
            assert watched.transitions(iid) == ["live"] and not watched.stale(iid), watched.changes
            assert watched.units(iid) == to_units(want[iid].book, watched.spec(iid))
        await play(fake, want, "ETH-USD", offers=[("3480.14", "1")])
        await eventually(lambda: watched.units("ETH-USD") == to_units(want["ETH-USD"].book, watched.spec("ETH-USD")), 5)
    assert_clean(feed.log_text())


async def test_coinbase_values_off_the_increments_are_exact_and_beyond_the_precision_stale_one_product(
    coinbase_fake: FakeCoinbase,
) -> None:
    fake = coinbase_fake
    want = seeded()  # ETH-USD's seed has 3480.115 (off the 0.01 increment) and 0.12345 (off the 0.0001 one)
    async with live_feed(*coinbase_args(fake)) as feed, watching(feed.address, *IDS) as watched:
        await eventually(lambda: watched.live(*IDS), 10, lambda: f"{watched.changes}")
        spec = {iid: watched.spec(iid) for iid in IDS}
        assert watched.units("ETH-USD") == to_units(want["ETH-USD"].book, spec["ETH-USD"])
        assert (3480115, 12345) in watched.units("ETH-USD")[0].items()
        async with asyncio.timeout(5):  # 4 decimals: more than the 0.001 unit holds (the fake's book keeps it out)
            await fake.update("ETH-USD", bids=[("3480.1255", "1")], apply=False)
        await play(fake, want, "BTC-USD", bids=[("67249.99", "0.75")])
        await eventually(lambda: "stale" in watched.transitions("ETH-USD"), STALE_WITHIN, lambda: f"{watched.changes}")
        [reason] = watched.reasons("ETH-USD")
        assert reason == SOURCE_STALE + (
            "coinbase: ETH-USD: price 3480.1255 has more decimals than the unit 0.001 holds; resubscribing"
        )
        await eventually(lambda: watched.live("ETH-USD"), HEAL_WITHIN, lambda: f"{watched.changes}")  # a fresh snapshot
        await play(fake, want, "ETH-USD", bids=[("3480.115", "0")])
        await eventually(
            lambda: all(watched.units(iid) == to_units(want[iid].book, spec[iid]) for iid in IDS),
            5,
            lambda: f"{watched.units('ETH-USD')}",
        )
        assert watched.transitions("ETH-USD") == ["live", "stale", "live"]
        assert watched.transitions("BTC-USD") == ["live"]  # never stale
    assert_clean(feed.log_text())
    lines = [line for line in feed.log_text().splitlines() if "3480.1255" in line]
    assert len(lines) == 1 and "ETH-USD" in lines[0], feed.log_text()


@pytest.mark.parametrize(
    ("products", "reject_unknown"), [("NOPE-USD", False), ("BTC-USD,NOPE-USD", False), ("BTC-USD,NOPE-USD", True)]
)
async def test_coinbase_unknown_product_exits_1_naming_it(
    coinbase_fake: FakeCoinbase, products: str, reject_unknown: bool
) -> None:
    coinbase_fake.reject_unknown = reject_unknown  # the products list answers 404 instead of leaving it out
    code, _, err, took = await run_command("-m", "feed_server", "--port", "0", *coinbase_args(coinbase_fake, products))
    assert code == 1, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("python -m feed_server: error: coinbase: unknown product NOPE-USD "), err
    assert took < 10


async def test_coinbase_unreachable_rest_exits_1(coinbase_fake: FakeCoinbase) -> None:
    rest = "http://127.0.0.1:1"
    code, _, err, _ = await run_command(
        "-m", "feed_server", "--port", "0", *coinbase_args(coinbase_fake, rest_url=rest)
    )
    assert code == 1, err
    assert len(err.splitlines()) == 1 and err.startswith(f"python -m feed_server: error: coinbase: cannot reach {rest}")


async def test_run_py_with_a_coinbase_source(coinbase_fake: FakeCoinbase) -> None:
    port, feed_port = free_port(), free_port()
    process, output = start_run(
        "--source", "coinbase", "--symbols", "BTC-USD", "--source-url", coinbase_fake.ws_url,
        "--source-rest-url", coinbase_fake.rest_url, "--port", str(port), "--feed-port", str(feed_port),
    )  # fmt: skip
    children: list[psutil.Process] = []
    try:
        line = await asyncio.to_thread(wait_for_line, process, output, "Dashboard:", 60.0)
        assert line.startswith(f"Dashboard: http://127.0.0.1:{port}/")
        children = psutil.Process(process.pid).children(recursive=True)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as http:
            [item] = (await http.get("/api/instruments")).json()
            assert (item["instrument_id"], item["kind"]) == ("BTC-USD", "crypto"), item
            assert item["order_tick_size"] >= item["tick_size"], item
            got = await until_json(http, "BTC-USD", shows(seeded()["BTC-USD"].book, live=True), 15)
            assert got["reason"] is None
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 30.0)
        assert process.returncode == 0, text_of(output)
    finally:
        await asyncio.to_thread(stop_process, process, also=children)
        output.close()
