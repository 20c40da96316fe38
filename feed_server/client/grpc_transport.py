"""The gRPC transport of the subscriber core: one channel, ListInstruments, one Subscribe stream, GetSnapshot.

With feed_server.client.rpc (the calls, the decoding, the translation of gRPC errors) and
feed_server.client.health, it is everything gRPC on the consumer side::

    subscriber = FeedSubscriber("127.0.0.1:50051", ["BTC-USD"], depth=20)   # a Subscriber over GrpcTransport
    subscriber.add_listener(lambda instrument_id, trades: ...)
    task = asyncio.create_task(subscriber.run(), name="feed-subscriber")
    await subscriber.wait_live(timeout=5)
    entry = subscriber.books["BTC-USD"]   # InstrumentBook: .book, .stale, .stale_reason, .trades, ...

One Subscribe stream carries every instrument, so the session is the stream's: a new session (a restarted feed)
starts every book over. The stream opens with a snapshot of each instrument. ``heartbeat_timeout`` seconds
without a response (the feed sends heartbeats) ends the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TypedDict, Unpack

import grpc
import grpc.aio

from feed_server.client.keeper import Subscriber
from feed_server.client.resync import SNAPSHOT_TIMEOUT
from feed_server.client.rpc import (
    CHANNEL_OPTIONS,
    FeedStub,
    decode,
    fetch_instruments,
    fetch_snapshot,
    translate_rpc_error,
)
from feed_server.client.transport import BookPort
from feed_server.protocol.book import MAX_DEPTH
from feed_server.protocol.errors import FeedUnavailable
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.pb import market_data_pb2 as pb

__all__ = ["YIELD_EVERY", "FeedSubscriber", "GrpcTransport", "SubscriberOptions"]

YIELD_EVERY = 500  # messages handed over between two yields to the event loop when a stream item is large


class SubscriberOptions(TypedDict, total=False):
    """The core's keyword options (feed_server.client.keeper.Subscriber)."""

    reconnect: bool
    heartbeat_timeout: float
    backoff_initial: float
    backoff_max: float
    resync_backoff_initial: float
    resync_backoff_max: float
    log_interval: float
    seed: int | None


class GrpcTransport:
    """A feed server at ``address`` (``HOST:PORT``), over gRPC. See the module docstring."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._stub: FeedStub | None = None  # while a connection is open

    @property
    def address(self) -> str:
        return self._address

    async def list_instruments(self, timeout: float) -> list[InstrumentSpec]:  # noqa: ASYNC109 (the RPC deadline)
        async with grpc.aio.insecure_channel(self._address, options=CHANNEL_OPTIONS) as channel:
            return (await fetch_instruments(FeedStub(channel), self._address, timeout)).specs

    async def fetch_snapshot(self, request: pb.SnapshotRequest) -> pb.BookMessage:
        stub = self._stub
        if stub is None:
            raise FeedUnavailable(f"no connection to {self._address}")
        return await fetch_snapshot(stub, self._address, request, timeout=SNAPSHOT_TIMEOUT)

    async def stream(self, books: BookPort) -> None:
        """One connection: list instruments, subscribe, hand the messages over until the stream ends or breaks."""
        address = self._address
        async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            stub = FeedStub(channel)
            self._stub = stub
            try:
                listing = await fetch_instruments(stub, address, rpc_timeout=max(books.heartbeat_timeout, 1.0))
                depths = {spec.instrument_id: books.depth for spec in listing.specs}
                books.take_listing(listing.specs, listing.source, depths)
                request = pb.SubscribeRequest(instrument_ids=list(books.instrument_ids), depth=books.depth)
                call = stub.subscribe(request)
                try:
                    await self._read(call, books)
                except grpc.aio.AioRpcError as exc:
                    raise translate_rpc_error(exc, address, "Subscribe") from exc
                finally:
                    call.cancel()
            finally:
                self._stub = None

    async def _read(self, call: grpc.aio.UnaryStreamCall, books: BookPort) -> None:
        loop = asyncio.get_running_loop()
        timeout = books.heartbeat_timeout
        address = self._address
        try:
            async with asyncio.timeout(timeout) as watchdog:
                async for raw in call:
                    # (No re-arming here: handling a response is synchronous, the watchdog cannot fire during it.)
                    response = decode(pb.SubscribeResponse, raw, address, "Subscribe")
                    messages: Sequence[pb.BookMessage] = response.messages
                    if len(messages) <= YIELD_EVERY:
                        books.stream_batch(response.session_id, messages)
                    else:
                        # A large batch (a backlog): let the event loop breathe between slices.
                        for start in range(0, len(messages), YIELD_EVERY):
                            books.stream_batch(response.session_id, messages[start : start + YIELD_EVERY])
                            await asyncio.sleep(0)
                            watchdog.reschedule(loop.time() + timeout)
                    # The silence that counts starts once this response is handled: a busy process must not
                    # take its own slowness for a dead feed.
                    watchdog.reschedule(loop.time() + timeout)
        except TimeoutError:
            books.stats.watchdog_timeouts += 1
            raise FeedUnavailable(f"no message from {address} for {timeout:g} s") from None


def FeedSubscriber(
    address: str, instrument_ids: Sequence[str] = (), depth: int = MAX_DEPTH, **options: Unpack[SubscriberOptions]
) -> Subscriber:
    """A subscriber core over gRPC to the feed server at ``address``."""
    return Subscriber(GrpcTransport(address), instrument_ids, depth, **options)
