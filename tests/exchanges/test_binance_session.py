"""The recorded session's shape, end to end: ``python -m feed_server --source binance --symbols
NKNUSDT,BLZETH,LRCBTC,RUNEEUR`` (and the dashboard) as real processes against the running fake market of
tests/exchanges/fake_binance_market.py, whose NKNUSDT book holds sizes off its stepSize of 1 (11979.3) and prices
off its tickSize, and whose connections end after a few seconds. Every book goes live, stays live across the
renewals (no stale book and no gap for any consumer), and equals the fake's true book over gRPC and through the
dashboard's JSON API.
"""

from __future__ import annotations

import asyncio
import signal
from decimal import Decimal

import httpx
import psutil

from tests.dashboard.conftest import start_dashboard
from tests.exchanges.fake_binance_market import FakeBinanceMarket, Market
from tests.exchanges.live_support import DecimalBook, live_feed, shows, to_units, until_json, watching
from tests.exchanges.test_binance_market import nkn_like, plain
from tests.exchanges.test_live_feed import assert_clean
from tests.servers import free_port
from tests.test_run import start_run, text_of, wait_for_line
from tests.waiting import eventually, stop_process

IDS = {"NKNUSDT": "NKN-USDT", "BLZETH": "BLZ-ETH", "LRCBTC": "LRC-BTC", "RUNEEUR": "RUNE-EUR"}


def session_markets() -> dict[str, Market]:
    blz, lrc, rune = plain("BLZETH", "BLZ"), plain("LRCBTC", "LRC"), plain("RUNEEUR", "RUNE")
    blz.quote, lrc.quote, rune.quote = "ETH", "BTC", "EUR"
    return {"NKNUSDT": nkn_like(), "BLZETH": blz, "LRCBTC": lrc, "RUNEEUR": rune}


def top(market: Market, depth: int = 100) -> DecimalBook:
    bids = {p: market.bids[p] for p in sorted(market.bids, reverse=True)[:depth]}
    asks = {p: market.asks[p] for p in sorted(market.asks)[:depth]}
    return bids, asks


async def test_a_real_sessions_symbols_go_live_and_stay_live_across_renewals() -> None:
    fake = FakeBinanceMarket(session_markets(), lifetime_s=4.0, ping_s=0.5, seed=5)
    await fake.start()
    dashboard = None
    urls = ("--source-url", fake.ws_url, "--source-rest-url", fake.rest_url, "--source-renew-after", "1.5")
    try:
        async with (
            live_feed("--source", "binance", "--symbols", ",".join(IDS), *urls) as feed,
            watching(feed.address, *IDS.values()) as watched,
        ):
            fake.trade(every_s=0.02, symbols_per_tick=2)
            await eventually(lambda: watched.live(*IDS.values()), 15, lambda: f"{watched.changes}")
            spec = watched.spec("NKN-USDT")
            assert (spec.lot_size, spec.order_lot_size) == (Decimal("0.00000001"), Decimal("1"))
            dashboard = await asyncio.to_thread(start_dashboard, feed.address)
            await eventually(lambda: fake.connections >= 5, 20, lambda: f"{fake.connections} connections")
            fake.pause()
            await eventually(fake.quiet, 5, "the fake flushing its batches")
            want = {iid: top(fake.markets[sym]) for sym, iid in IDS.items()}
            await eventually(
                lambda: all(watched.units(iid) == to_units(want[iid], watched.spec(iid)) for iid in want),
                10,
                lambda: f"books differ; {watched.changes}",
            )
            assert any(size % 1 for size in want["NKN-USDT"][0].values())  # sizes off the stepSize, served
            async with httpx.AsyncClient(base_url=dashboard.http, timeout=5.0) as http:
                for iid, book in want.items():
                    got = await until_json(http, iid, shows(book), 10)
                    assert got["stale"] is False, got
            for iid in IDS.values():
                assert watched.transitions(iid) == ["live"], watched.changes  # never stale across the renewals
            stats = watched.subscriber.stats
            assert (stats.gaps, stats.checksum_errors, stats.digest_errors, stats.resyncs) == (0, 0, 0, 0)
            assert fake.lifetime_closes == 0 and fake.ping_drops == 0
        log = feed.log_text()
        assert "connection renewed" in log and "fetching a new snapshot" not in log, log[-3000:]
        assert [path for _, _, path in fake.requests].count("/api/v3/depth") == 4, fake.requests  # one each
    finally:
        if dashboard is not None:
            assert_clean(await asyncio.to_thread(dashboard.stop))
        await fake.stop()
    assert_clean(feed.log_text())


async def test_the_issues_command_line_shows_every_symbol_live_on_the_dashboard() -> None:
    """``python run.py --source binance --symbols NKNUSDT,BLZETH,LRCBTC,RUNEEUR --source-url ... --source-rest-url
    ...``, as the defect was reported: every book live on the dashboard, NKN-USDT with its 11979.3-like sizes."""
    fake = FakeBinanceMarket(session_markets(), seed=7)
    await fake.start()
    port, feed_port = free_port(), free_port()
    process, output = start_run(
        "--source", "binance", "--symbols", ",".join(IDS), "--source-url", fake.ws_url,
        "--source-rest-url", fake.rest_url, "--source-renew-after", "2", "--port", str(port),
        "--feed-port", str(feed_port),
    )  # fmt: skip
    children: list[psutil.Process] = []
    try:
        line = await asyncio.to_thread(wait_for_line, process, output, "Dashboard:", 60.0)
        children = psutil.Process(process.pid).children(recursive=True)
        fake.trade(every_s=0.05, symbols_per_tick=2)
        assert line.startswith(f"Dashboard: http://127.0.0.1:{port}/"), line
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as http:
            listed = {item["instrument_id"]: item for item in (await http.get("/api/instruments")).json()}
            assert set(listed) == set(IDS.values())
            assert (listed["NKN-USDT"]["lot_size"], listed["NKN-USDT"]["order_lot_size"]) == (1e-8, 1.0)
            for iid in IDS.values():
                await until_json(http, iid, lambda j: j["stale"] is False and bool(j["bids"]), 20)
            fake.pause()
            await eventually(fake.quiet, 5, "the fake flushing its batches")
            nkn = await until_json(http, "NKN-USDT", shows(top(fake.markets["NKNUSDT"]), live=True), 10)
            assert any(size != int(size) for _, size in nkn["bids"]), nkn["bids"][:5]  # off the stepSize of 1
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 30.0)
        assert process.returncode == 0, text_of(output)
    finally:
        await asyncio.to_thread(stop_process, process, also=children)
        output.close()
        await fake.stop()
