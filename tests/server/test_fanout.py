"""The fan-out's refusals: server-side errors from the one tree, never the consumer's."""

from __future__ import annotations

import asyncio

import pytest

from feed_server.protocol.errors import Code, FeedError, InvalidRequest, NoSuchInstrument, RequestError
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.server.engine import Engine
from feed_server.server.subscription import Subscription


def test_bad_subscriptions_raise_request_errors_with_their_status() -> None:
    core = Engine(DEFAULT_INSTRUMENTS[:2], seed=1, rate=50.0).core
    fanout = core.fanout
    with pytest.raises(NoSuchInstrument) as unknown:
        core.subscribe(["NOPE"], 10)
    assert unknown.value.code is Code.UNKNOWN_INSTRUMENT and not isinstance(unknown.value, FeedError)
    with pytest.raises(InvalidRequest) as depth:
        core.snapshot("AAPL", 101)
    assert depth.value.code is Code.BAD_REQUEST and "101" in str(depth.value)
    with pytest.raises(RequestError):
        core.subscribe(["AAPL", "AAPL"], 10)
    assert fanout.registry.count == 0


async def take(sub: Subscription) -> list[pb.BookMessage]:
    async with asyncio.timeout(1.0):
        batch = await sub.next_batch()
    assert batch is not None
    return batch


async def test_a_stale_source_is_on_every_message_built_for_it_and_a_heartbeat_carries_each_change() -> None:
    engine = Engine(DEFAULT_INSTRUMENTS[:2], seed=1, rate=50.0)
    fanout = engine.fanout
    aapl = engine.source.books["AAPL"]
    full, shallow = fanout.subscribe(None, 100), fanout.subscribe(["AAPL"], 5)
    for sub in (full, shallow):
        assert not any(m.source_stale for m in await take(sub))  # the opening snapshots
    fanout.set_source_stale(aapl, "binance: connection lost; reconnecting", 1)
    fanout.set_source_stale(aapl, "binance: connection lost; reconnecting", 2)  # no change: no message
    for sub in (full, shallow):
        (message,) = await take(sub)
        assert message.instrument_id == "AAPL" and message.HasField("heartbeat")
        assert message.source_stale and message.source_stale_reason == "binance: connection lost; reconnecting"
    snapshot = fanout.get_snapshot("AAPL", 10)
    assert snapshot.source_stale and fanout.get_snapshot("MSFT", 10).source_stale is False
    late = fanout.subscribe(["AAPL"], 20)
    (opening,) = await take(late)
    assert opening.HasField("snapshot") and opening.source_stale
    fanout.set_source_stale(aapl, None, 3)
    for sub in (full, shallow, late):
        (message,) = await take(sub)
        assert message.HasField("heartbeat") and not message.source_stale and message.source_stale_reason == ""
    assert fanout.source_stale("AAPL") is None and not fanout.get_snapshot("AAPL", 10).source_stale
