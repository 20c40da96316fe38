"""MarketHistory and the charts' data, from real books: a real FeedBridge subscribed to a real feed process.

The subscriber runs as a task in the test's loop; the tests call ``MarketHistory.sample`` themselves with a
chosen clock (the sampler task is the app's), so windows are checked without waiting minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence

from dashboard.bridge import FeedBridge
from dashboard.charts import HEATMAP_COLUMNS, HEATMAP_ROWS, PRICE_COLUMNS, PRICE_ROWS, heatmap_data, price_data
from dashboard.history import MarketHistory
from feed_server.protocol.book import Side, Trade
from tests.client.support import running
from tests.servers import free_port, start_feed_process, wait_for_health
from tests.waiting import eventually, stop_process

NS = 1_000_000_000


@contextlib.asynccontextmanager
async def live_bridge(address: str, **history_args: int) -> AsyncIterator[tuple[FeedBridge, MarketHistory]]:
    bridge = FeedBridge(address, heartbeat_timeout=1.0, backoff_max=0.5)
    history = MarketHistory(bridge, **history_args)  # type: ignore[arg-type]
    async with running(bridge.subscriber):
        await bridge.subscriber.wait_live(timeout=15)
        yield bridge, history


async def test_windows_trim_old_samples(feed_address: str) -> None:
    async with live_bridge(feed_address) as (bridge, history):
        start = time.time_ns()
        for i in range(800):  # 400 s of samples at 2 Hz, on a clock of the test's choosing
            if i % 40 == 0:
                await asyncio.sleep(0.01)  # the book moves on between samples
            history.sample(start + i * NS // 2)
        item = history.get("AAPL")
        assert item is not None
        assert item.version == 800
        now = start + 799 * NS // 2
        assert len(item.mids) == 601 and item.mids[0][0] >= now - 300 * NS  # 5 minutes at 2 Hz
        assert len(item.depth) == 241 and item.depth[0].time_ns >= now - 120 * NS  # 2 minutes at 2 Hz
        assert all(mid is not None for _, mid in item.mids)  # the books were live throughout
        sample = item.depth[-1]
        bids = [p for p, _ in sample.levels if p < (sample.mid or 0)]
        assert 0 < len(bids) <= 25 and 0 < len(sample.levels) - len(bids) <= 25
        assert set(history.instrument_ids()) == set(bridge.subscriber.books)


async def test_trades_are_kept_by_second_price_and_side_and_bounded(feed_address: str) -> None:
    async with live_bridge(feed_address) as (bridge, history):
        seen: Counter[tuple[int, Side]] = Counter()  # the size of every AAPL trade applied from now on

        def listener(instrument_id: str, trades: Sequence[Trade]) -> None:
            if instrument_id == "AAPL":
                for t in trades:
                    seen[(t.price, t.aggressor)] += t.size

        item = history.get("AAPL")
        kept_before: Counter[tuple[int, Side]] = Counter()
        for t in item.trades if item is not None else ():
            kept_before[(t.price, t.aggressor)] += t.size
        # Registered after the history's own listener, so it sees the same messages from the next one on; what
        # the history holds of the current message (if any) is counted in kept_before.
        bridge.subscriber.add_listener(listener)

        def both_sides() -> bool:
            return len({side for _, side in seen}) == 2 and sum(seen.values()) >= 200

        await eventually(both_sides, within=30)
        item = history.get("AAPL")
        assert item is not None
        kept: Counter[tuple[int, Side]] = Counter()
        for t in item.trades:
            kept[(t.price, t.aggressor)] += t.size
        # Every trade applied went in (none lost between samples), added into its second's point.
        assert kept - kept_before == seen, "the points' sizes are not the trades'"
        keys = [(t.time_ns, t.price, t.aggressor) for t in item.trades]
        assert len(keys) == len(set(keys)), "one point per second, price and side"
        assert all(t.time_ns % NS == 0 for t in item.trades)
        times = [t.time_ns for t in item.trades]
        assert times == sorted(times)
        history.sample(times[-1] + 301 * NS)  # five minutes later: every trade is out of the window
        assert not item.trades


async def test_the_trade_points_are_capped(feed_address: str) -> None:
    async with live_bridge(feed_address, max_trades=40) as (_, history):

        def capped() -> bool:
            item = history.get("AAPL")
            return item is not None and item.trades_added > 60

        await eventually(capped, within=30)
        item = history.get("AAPL")
        assert item is not None and item.trades.maxlen == 40 and len(item.trades) == 40


async def test_stale_books_are_gaps_and_a_new_session_does_not_corrupt() -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    process = start_feed_process(port, "--seed", "1", "--rate", "200")
    try:
        wait_for_health(address, 15.0)
        async with live_bridge(address) as (bridge, history):
            history.sample()
            first_session = bridge.subscriber.session_id
            stop_process(process)
            await eventually(lambda: all(b.stale for b in bridge.subscriber.books.values()), within=10)
            history.sample()
            item = history.get("MSFT")
            assert item is not None
            assert item.mids[-1][1] is None and item.depth[-1].levels == ()  # a stale book is a gap
            process = start_feed_process(port, "--seed", "2", "--rate", "200")  # another session, other prices
            await eventually(
                lambda: (
                    bridge.subscriber.session_id != first_session
                    and not any(b.stale for b in bridge.subscriber.books.values())
                ),
                within=20,
            )
            history.sample()
            assert history.get("MSFT") is item  # same spec: the history goes on after the gap
            # the stale sample, then a gap marking the new session, then the new session's mid
            assert [mid is not None for _, mid in item.mids] == [True, False, False, True]
            book = bridge.subscriber.books["MSFT"].book
            assert item.mids[-1][1] == book.mid()
            assert item.session_id == bridge.subscriber.session_id
    finally:
        stop_process(process)


async def test_chart_data_is_small_and_exact(feed_address: str) -> None:
    async with live_bridge(feed_address) as (_, history):
        start = time.time_ns()
        for i in range(700):
            if i % 50 == 0:
                await asyncio.sleep(0.02)  # the book moves on between samples
            history.sample(start + i * NS // 2)
        for instrument_id in history.instrument_ids():
            item = history.get(instrument_id)
            assert item is not None
            now = item.mids[-1][0]
            prices = price_data(item, now)
            assert len(prices.times) == len(prices.mid) == PRICE_COLUMNS
            assert 0 < len(prices.prices) <= PRICE_ROWS
            decimals = item.spec.price_decimals
            assert all(len(text.partition(".")[2]) == decimals for text in prices.prices)
            assert all(len(t) == 8 and t[2] == t[5] == ":" for t in prices.times)  # HH:MM:SS
            assert all(row == "-" or 0 <= int(row) < len(prices.prices) for row in prices.mid)
            heat = heatmap_data(item, now)
            assert len(heat.times) == HEATMAP_COLUMNS and 0 < len(heat.prices) <= HEATMAP_ROWS
            assert 0 < len(heat.cells) <= HEATMAP_COLUMNS * HEATMAP_ROWS
            assert all(0 <= c < HEATMAP_COLUMNS and 0 <= r < len(heat.prices) and s > 0 for c, r, s in heat.cells)
            assert heat.max_size == max(s for _, _, s in heat.cells)


async def test_trades_split_in_the_price_chart(feed_address: str) -> None:
    async with live_bridge(feed_address) as (_, history):

        def has_both() -> bool:
            item = history.get("AAPL")
            return item is not None and {t.aggressor for t in item.trades} == {Side.BID, Side.ASK}

        await eventually(has_both, within=30)
        history.sample()
        item = history.get("AAPL")
        assert item is not None
        prices = price_data(item, time.time_ns())
        assert prices.buys and prices.sells
        buys = sum(t.size for t in item.trades if t.aggressor is Side.BID)
        assert sum(s for _, _, s in prices.buys) == buys
