"""The Binance adapter against a running fake market (tests/exchanges/fake_binance_market.py): real-data shapes
(values off the order filters, a filter coarser than the book), the REST weight budget with 300 symbols, 429
and 418, pings, and connection renewals. The fake's true book (exact Decimals) is the independent rebuild.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from feed_server.server.exchanges.binance import BinanceAdapter
from feed_server.server.exchanges.binance_rest import BUDGET_WAIT
from tests.exchanges.fake_binance_market import FakeBinanceMarket, Market
from tests.exchanges.test_binance import RecordingSink
from tests.waiting import eventually


def nkn_like(symbol: str = "NKNUSDT", base: str = "NKN", quote: str = "USDT") -> Market:
    """As the recorded NKNUSDT: stepSize 1, yet sizes of 11979.3; prices finer than today's tickSize too."""
    return Market(symbol, base, quote, "0.00010000", "1.00000000", Decimal("0.3500"), Decimal("0.00001"),
                  Decimal("0.1"))  # fmt: skip


def plain(symbol: str, base: str) -> Market:
    return Market(symbol, base, "USDT", "0.01000000", "0.00010000", Decimal("100.00"), Decimal("0.01"),
                  Decimal("0.0001"))  # fmt: skip


def truth(market: Market) -> tuple[dict[Decimal, Decimal], ...]:
    return dict(market.bids), dict(market.asks)


@contextlib.asynccontextmanager
async def adapter_on(
    fake: FakeBinanceMarket, symbols: list[str], **options: float
) -> AsyncIterator[tuple[RecordingSink, BinanceAdapter, asyncio.Task[None]]]:
    sink = RecordingSink()
    await fake.start()
    task: asyncio.Task[None] | None = None
    try:
        adapter = BinanceAdapter(
            symbols, fake.ws_url, fake.rest_url, resync_initial=0.05, resync_max=0.5, rng=random.Random(3), **options
        )
        async with asyncio.timeout(10):
            specs = await adapter.instruments()
        sink.specs = {s.instrument_id: s for s in specs}
        task = asyncio.create_task(adapter.run(sink))
        yield sink, adapter, task
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                async with asyncio.timeout(5):
                    await task
        await fake.stop()


def stale_after_live(sink: RecordingSink, instrument_id: str) -> list[str]:
    """The stale reasons the sink got after the instrument's first book."""
    calls = [c for c in sink.calls if c[1] == instrument_id]
    first = next((i for i, c in enumerate(calls) if c[0] == "book"), len(calls))
    return [reason for kind, _, reason in calls[first:] if kind == "stale"]


async def settled(fake: FakeBinanceMarket, sink: RecordingSink, ids: dict[str, str], seconds: float) -> None:
    """Stop the market, then wait until every book equals the fake's true book."""
    fake.pause()
    await eventually(fake.quiet, 5, "the fake flushing its batches")
    await eventually(
        lambda: all(sink.decimal_book(iid) == truth(fake.markets[sym]) for sym, iid in ids.items()),
        seconds,
        lambda: f"books differ; calls {sink.calls[-10:]}",
    )


async def test_levels_off_the_order_filters_go_live_and_equal_the_true_book() -> None:
    fake = FakeBinanceMarket({"NKNUSDT": nkn_like(), "BLZETH": plain("BLZETH", "BLZ")})
    async with adapter_on(fake, ["NKNUSDT", "BLZETH"]) as (sink, _, task):
        nkn = sink.specs["NKN-USDT"]
        assert (nkn.order_lot_size, nkn.lot_size) == (Decimal("1"), Decimal("0.00000001"))
        assert nkn.order_tick_size == Decimal("0.0001")
        assert any(size % 1 for size in fake.markets["NKNUSDT"].bids.values())  # the book holds e.g. 11979.3
        fake.trade(every_s=0.02)
        await eventually(lambda: sink.live.get("NKN-USDT", False) and sink.live.get("BLZ-USDT", False), 10,
                    lambda: f"{sink.calls[-6:]}")  # fmt: skip
        await eventually(lambda: len(fake.requests) >= 3, 5, "the snapshots")
        await settled(fake, sink, {"NKNUSDT": "NKN-USDT", "BLZETH": "BLZ-USDT"}, 10)
        assert not task.done()
        assert stale_after_live(sink, "NKN-USDT") == [] and stale_after_live(sink, "BLZ-USDT") == []
        assert [path for _, _, path in fake.requests].count("/api/v3/depth") == 2  # one snapshot each, no loop


async def test_300_symbols_start_within_the_weight_budget_and_all_go_live() -> None:
    markets = {f"S{i:03d}USDT": plain(f"S{i:03d}USDT", f"S{i:03d}") for i in range(300)}
    # a 1-second window of 6,000 so that the test takes seconds; the share (0.5) leaves 3,000 a second: 60 snapshots
    fake = FakeBinanceMarket(markets, window_s=1, weight_limit=6000)
    async with adapter_on(fake, list(markets)) as (sink, adapter, _):
        assert adapter.rest.budget.budgets == {1: 3000}
        fake.trade(every_s=0.05, symbols_per_tick=5)
        ids = [spec.instrument_id for spec in sink.specs.values()]
        await eventually(lambda: all(sink.live.get(i, False) for i in ids), 30,
                    lambda: f"{sum(sink.live.get(i, False) for i in ids)} of 300 live")  # fmt: skip
        waited = [iid for kind, iid, reason in sink.calls if kind == "stale" and reason.startswith(BUDGET_WAIT)]
        assert len(set(waited)) > 200  # most books waited their turn, and said so
        assert fake.rejected == []  # never a 429
        times = [(t, w) for t, w, _ in fake.requests]
        for start, _ in times:
            assert sum(w for t, w in times if start <= t < start + 1.0) <= 3000
        assert [path for _, _, path in fake.requests].count("/api/v3/depth") == 300


async def test_429_and_418_hold_every_rest_request_until_retry_after() -> None:
    for status in (429, 418):
        fake = FakeBinanceMarket({"AAAUSDT": plain("AAAUSDT", "AAA"), "BBBUSDT": plain("BBBUSDT", "BBB")})
        async with adapter_on(fake, ["AAAUSDT", "BBBUSDT"]) as (sink, _, _):
            fake.reject.append((status, 1.5))  # the next request (a snapshot) is refused
            fake.trade(every_s=0.02)
            await eventually(lambda: sink.live.get("AAA-USDT", False) and sink.live.get("BBB-USDT", False), 10,
                        lambda: f"{sink.calls[-6:]}")  # fmt: skip
            [(refused_at, answered)] = fake.rejected
            assert answered == status
            after = [t for t, _, _ in fake.requests if t > refused_at]
            assert after and min(after) - refused_at >= 1.4, (status, after)  # nothing sent before Retry-After
            reasons = [r for kind, _, r in sink.calls if kind == "stale"]
            assert any(r.startswith(BUDGET_WAIT) and f"HTTP {status}" in r for r in reasons), reasons


async def test_renewals_move_every_book_without_a_stale_or_a_snapshot_and_pings_are_answered() -> None:
    fake = FakeBinanceMarket(
        {"NKNUSDT": nkn_like(), "LRCBTC": plain("LRCBTC", "LRC"), "RUNEEUR": plain("RUNEEUR", "RUNE")},
        lifetime_s=3.0,
        ping_s=0.3,
    )
    ids = {"NKNUSDT": "NKN-USDT", "LRCBTC": "LRC-USDT", "RUNEEUR": "RUNE-USDT"}
    async with adapter_on(fake, list(ids), renew_after=1.2, switch_within=1.0) as (sink, adapter, task):
        fake.trade(every_s=0.01, symbols_per_tick=2)
        await eventually(lambda: all(sink.live.get(i, False) for i in ids.values()), 10, lambda: f"{sink.calls[-6:]}")
        snapshots = [path for _, _, path in fake.requests].count("/api/v3/depth")
        await eventually(lambda: adapter.renewals >= 4, 15, lambda: f"{adapter.renewals} renewals")
        await settled(fake, sink, ids, 10)
        assert not task.done()
        for iid in ids.values():
            assert stale_after_live(sink, iid) == [], (iid, sink.calls)
        assert [path for _, _, path in fake.requests].count("/api/v3/depth") == snapshots  # no snapshot to renew
        for symbol, iid in ids.items():  # every trade once, none lost or repeated across the renewals
            spec = sink.specs[iid]
            got = [(t.price * spec.tick_size, t.size * spec.lot_size) for t in sink.trades.get(iid, [])]
            made = fake.markets[symbol].trades
            assert got and got == made[len(made) - len(got) :], (iid, len(got), len(made))
        assert fake.lifetime_closes == 0  # every connection was renewed before the exchange ended it
        assert fake.ping_drops == 0  # every ping had its pong
        assert fake.connections >= 5


async def test_a_value_beyond_the_precision_stales_with_one_line_and_paced_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeBinanceMarket({"NKNUSDT": nkn_like(), "BLZETH": plain("BLZETH", "BLZ")})
    fake.markets["NKNUSDT"].poison = ("0.349990001", "1.0")  # 9 decimals: Binance prints 8
    with caplog.at_level(logging.WARNING, logger="feed_server.server.exchanges.binance"):
        async with adapter_on(fake, ["NKNUSDT", "BLZETH"]) as (sink, _, task):
            fake.trade(every_s=0.02)
            await eventually(lambda: sink.live.get("BLZ-USDT", False), 10, lambda: f"{sink.calls[-6:]}")
            await eventually(lambda: [p for _, _, p in fake.requests].count("/api/v3/depth") >= 4, 10, "retries")
            started = fake.requests[1][0]
            await asyncio.sleep(2.0)  # a window to count the retries in, not a wait for a condition
            tries = [t for t, _, p in fake.requests if p == "/api/v3/depth" and t >= started]
            assert len(tries) <= 12, len(tries)  # paced (0.05 s doubling to 0.5 s), never a tight loop
            assert not sink.live.get("NKN-USDT", False)
            reasons = [r for kind, iid, r in sink.calls if kind == "stale" and iid == "NKN-USDT"]
            assert any("0.349990001" in r and "more decimals than the unit" in r for r in reasons), reasons
            fake.markets["NKNUSDT"].poison = None  # the exchange's next snapshot fits
            await eventually(lambda: sink.live.get("NKN-USDT", False), 5, lambda: f"{sink.calls[-6:]}")
            await settled(fake, sink, {"NKNUSDT": "NKN-USDT", "BLZETH": "BLZ-USDT"}, 10)
            assert not task.done()
    lines = [r.getMessage() for r in caplog.records if "0.349990001" in r.getMessage()]
    assert len(lines) == 1, lines  # one line (the throttle counts the rest)
