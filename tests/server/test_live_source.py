"""A live exchange as the engine's source (feed_server.server.exchanges.live_source), driven by a scripted adapter
in-process: what the adapter hands over reaches gRPC subscribers at once, verified by the consumer's own checks,
with the feed's own sequences; the source's state (stale, whole again) reaches every consumer, idle or not."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from feed_server.client.grpc_transport import FeedSubscriber
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.levels import LevelChange, Side, Trade
from feed_server.server.exchanges.adapter import BookSink
from feed_server.server.exchanges.live_source import LiveSource
from tests.client.support import eventually, running
from tests.servers import running_feed_server

SPECS = [
    InstrumentSpec("BTC-USDT", "BTC / USDT (test)", "crypto", Decimal("0.01"), Decimal("0.00001")),
    InstrumentSpec("ETH-USDT", "ETH / USDT (test)", "crypto", Decimal("0.01"), Decimal("0.0001")),
]


class ScriptedAdapter:
    """An exchange adapter whose ``run`` waits; the test drives the sink it was given."""

    name = "scripted"
    max_depth = 100
    description = "scripted exchange (test)"

    def __init__(self) -> None:
        self.sink: BookSink | None = None
        self.running = asyncio.Event()

    async def instruments(self) -> list[InstrumentSpec]:
        return list(SPECS)

    async def run(self, sink: BookSink) -> None:
        self.sink = sink
        self.running.set()
        await asyncio.Event().wait()


async def test_books_changes_and_source_state_reach_a_verifying_subscriber() -> None:
    adapter = ScriptedAdapter()
    source = LiveSource(adapter, SPECS)
    async with running_feed_server(source=source) as server:
        async with asyncio.timeout(5):
            await adapter.running.wait()
        sink = adapter.sink
        assert sink is not None
        subscriber = FeedSubscriber(server.address, depth=100)
        async with running(subscriber):
            await eventually(
                lambda: "BTC-USDT" in subscriber.books and subscriber.books["BTC-USDT"].book.sequence is not None, 5
            )
            btc = subscriber.books["BTC-USDT"]
            assert btc.stale and "waiting for the first book" in (
                btc.stale_reason or ""
            )  # nothing from the exchange yet
            sink.book("BTC-USDT", [(6_727_350, 5), (6_727_300, 7)], [(6_728_000, 3)], 1_700_000_000_000_000_000)
            await eventually(lambda: not btc.stale, 5)
            assert btc.book.bids() == [(6_727_350, 5), (6_727_300, 7)] and btc.book.asks() == [(6_728_000, 3)]
            sink.changes(
                "BTC-USDT",
                [
                    LevelChange(Side.BID, 6_727_400, 2),
                    LevelChange(Side.ASK, 6_728_000, 0),
                    LevelChange(Side.ASK, 6_728_100, 9),
                ],
                [Trade(6_728_000, 3, Side.BID)],
                1_700_000_000_100_000_000,
            )
            await eventually(lambda: btc.book.best_ask() == (6_728_100, 9), 5)
            assert btc.book.best_bid() == (6_727_400, 2) and btc.last_trade == Trade(6_728_000, 3, Side.BID)
            assert btc.last_event_time_ns == 1_700_000_000_100_000_000  # the exchange's own time
            # A bid that crosses the resting ask: the ask left behind goes, the latest update wins.
            sink.changes("BTC-USDT", [LevelChange(Side.BID, 6_728_200, 1)], [], 1_700_000_000_200_000_000)
            await eventually(lambda: btc.book.best_bid() == (6_728_200, 1), 5)
            assert btc.book.best_ask() is None and not btc.stale
            # The exchange goes away: stale with its reason, the book kept, heartbeats go on saying so.
            sink.stale("BTC-USDT", "scripted: connection lost; reconnecting")
            await eventually(lambda: btc.stale, 5)
            assert btc.stale_reason == "the feed's source is stale: scripted: connection lost; reconnecting"
            seen = btc.messages_applied
            await asyncio.sleep(1.2)
            assert btc.messages_applied >= seen + 2 and btc.stale  # heartbeats, still stale
            eth = subscriber.books["ETH-USDT"]
            assert eth.stale and "waiting for the first book" in (eth.stale_reason or "")
            # Back: a fresh book makes it live again.
            sink.book("BTC-USDT", [(6_700_000, 1)], [(6_700_100, 1)], 1_700_000_001_000_000_000)
            await eventually(lambda: not btc.stale, 5)
            assert btc.book.bids() == [(6_700_000, 1)] and btc.book.asks() == [(6_700_100, 1)]
        stats = subscriber.stats
        assert stats.gaps == stats.checksum_errors == stats.digest_errors == stats.crossed == 0, stats
