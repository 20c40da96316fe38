"""Property: over a real gRPC stream, the book rebuilt by a consumer after every message is the simulator's own
book after a whole number of its events (later messages, later events: see tests/truth.py), for any seed, depth
and pair of instruments; sequences are contiguous; and every message's book digest is the true book's."""

from __future__ import annotations

import asyncio

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feed_server.protocol.book import OrderBook
from feed_server.protocol.checksum import book_digest
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.pb import market_data_pb2_grpc
from feed_server.protocol.wire import apply_message
from tests.servers import running_feed_server
from tests.truth import TruthCursor

SPECS = {spec.instrument_id: spec for spec in DEFAULT_INSTRUMENTS}
RATE = 2000.0  # order events per second per instrument: thousands of events in about a second
MESSAGES_PER_INSTRUMENT = 1500


async def collect(seed: int, ids: list[str], depth: int) -> dict[str, list[pb.BookMessage]]:
    """Messages per instrument from a real server's Subscribe stream, until each has enough."""
    got: dict[str, list[pb.BookMessage]] = {iid: [] for iid in ids}
    async with running_feed_server(seed=seed, rate=RATE, instruments=[SPECS[i] for i in ids]) as server:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = market_data_pb2_grpc.MarketDataStub(channel)
            call = stub.Subscribe(pb.SubscribeRequest(instrument_ids=ids, depth=depth))
            async with asyncio.timeout(30):
                async for item in call:
                    for message in item.messages:
                        got[message.instrument_id].append(message)
                    if all(len(messages) >= MESSAGES_PER_INSTRUMENT for messages in got.values()):
                        break
            call.cancel()
    return got


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=2**31),
    depth=st.sampled_from([5, 10, 20, 100]),
    ids=st.lists(st.sampled_from(sorted(SPECS)), min_size=2, max_size=2, unique=True),
)
def test_the_streamed_book_is_the_simulators_book_after_every_message(seed: int, depth: int, ids: list[str]) -> None:
    streams = asyncio.run(collect(seed, ids, depth))
    for iid, messages in streams.items():
        assert messages[0].WhichOneof("body") == "snapshot"
        truth = TruthCursor(SPECS[iid], seed, RATE, depth)
        rebuilt = OrderBook(iid, depth)
        previous = None
        for message in messages:
            if previous is not None:
                assert message.sequence == previous + 1, (iid, previous, message.sequence)
            previous = message.sequence
            assert message.HasField("book_digest"), (iid, message.sequence)
            apply_message(rebuilt, message)  # verifies the sequence, the crossing, the checksum and the digest
            truth.seek(rebuilt.bids(), rebuilt.asks(), f"the book at sequence {message.sequence}")
            true_bids, true_asks = truth.levels()
            # The digest the feed sent is the digest of the true book at the subscribed depth, every level.
            assert message.book_digest == book_digest(true_bids, true_asks), (iid, message.sequence)
        assert len(messages) >= MESSAGES_PER_INSTRUMENT
        assert truth.events >= len(messages) - 1  # every message but the snapshot holds at least one event
