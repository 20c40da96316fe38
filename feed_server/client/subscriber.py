"""The feed subscriber over gRPC: one asyncio task that keeps a set of books in step with a feed server.

Used by the CLI client and the dashboard (through feed_server.client.addresses.make_subscriber, which picks the
NATS adapter for a ``nats://`` address)::

    subscriber = FeedSubscriber("127.0.0.1:50051", ["BTC-USD"], depth=20)
    subscriber.add_listener(lambda instrument_id, trades: ...)
    task = asyncio.create_task(subscriber.run(), name="feed-subscriber")
    await subscriber.wait_live(timeout=5)
    entry = subscriber.books["BTC-USD"]   # InstrumentBook: .book, .stale, .stale_reason, .trades, ...

``run()`` owns its gRPC channel. Each instrument's stream is verified (sequence, crossing, checksum, book digest)
by feed_server.client.sync; a broken instrument is marked stale and resynchronised alone with GetSnapshot
(feed_server.client.resync) while the others keep flowing. One Subscribe stream carries every instrument, so the
session is the stream's: a new session (a restarted feed) starts every book over. The reconnection rules are
feed_server.client.keeper's; gRPC errors become feed_server.protocol.errors here and in feed_server.client.rpc.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from functools import partial

import grpc
import grpc.aio

from feed_server.client.keeper import BookKeeper, BookListener, ConnectionState
from feed_server.client.resync import SNAPSHOT_TIMEOUT
from feed_server.client.rpc import (
    CHANNEL_OPTIONS,
    FeedStub,
    decode,
    fetch_instruments,
    fetch_snapshot,
    translate_rpc_error,
)
from feed_server.client.stats import SubscriberStats
from feed_server.client.sync import InstrumentBook
from feed_server.protocol.errors import FeedUnavailable
from feed_server.protocol.pb import market_data_pb2 as pb

__all__ = ["BookListener", "ConnectionState", "FeedSubscriber", "InstrumentBook", "SubscriberStats"]

log = logging.getLogger(__name__)

YIELD_EVERY = 500  # messages applied between two yields to the event loop when a stream item is large


class FeedSubscriber(BookKeeper):
    """Subscribes to instruments on a gRPC feed server and keeps their books. See the module docstring."""

    async def _connect_once(self) -> None:
        """One connection: list instruments, subscribe, apply messages until the stream ends or breaks."""
        self._live_since = None
        async with grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS) as channel:
            stub = FeedStub(channel)
            self._resyncs.fetch = partial(fetch_snapshot, stub, self.address, timeout=SNAPSHOT_TIMEOUT)
            try:
                listing = await fetch_instruments(stub, self.address, rpc_timeout=max(self.heartbeat_timeout, 1.0))
                self.source = listing.source
                self._set_instruments(listing.specs)
                request = pb.SubscribeRequest(instrument_ids=list(self.instrument_ids), depth=self.depth)
                call = stub.subscribe(request)
                try:
                    await self._read_stream(call)
                except grpc.aio.AioRpcError as exc:
                    raise translate_rpc_error(exc, self.address, "Subscribe") from exc
                finally:
                    call.cancel()
            finally:
                self._resyncs.fetch = None
                self._resyncs.cancel_all()

    async def _read_stream(self, call: grpc.aio.UnaryStreamCall) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.heartbeat_timeout
        try:
            async with asyncio.timeout(timeout) as watchdog:
                async for raw in call:
                    # (No re-arming here: handling a response is synchronous, the watchdog cannot fire during it.)
                    response = decode(pb.SubscribeResponse, raw, self.address, "Subscribe")
                    if response.session_id != self.session_id or self.state is not ConnectionState.LIVE:
                        self._new_stream(response.session_id)
                    messages = response.messages
                    if len(messages) <= YIELD_EVERY:
                        self._on_messages(messages)
                    else:
                        # A large batch (a backlog): let the event loop breathe between slices.
                        for start in range(0, len(messages), YIELD_EVERY):
                            self._on_messages(messages[start : start + YIELD_EVERY])
                            await asyncio.sleep(0)
                            watchdog.reschedule(loop.time() + timeout)
                    # The silence that counts starts once this response is handled: a busy process must not
                    # take its own slowness for a dead feed.
                    watchdog.reschedule(loop.time() + timeout)
        except TimeoutError:
            self.stats.watchdog_timeouts += 1
            raise FeedUnavailable(f"no message from {self.address} for {timeout:g} s") from None

    def _on_messages(self, messages: Sequence[pb.BookMessage]) -> None:
        syncs = self._syncs
        stats = self.stats
        for message in messages:
            instrument_id = message.instrument_id
            sync = syncs.get(instrument_id)
            if sync is None:
                log.debug("ignoring message for unsubscribed instrument %r", instrument_id)
                continue
            trades = sync.on_live_message(message)  # the common case: nothing but the book and one notification
            if trades is None:
                self._handle(sync, sync.on_stream(message))
                continue
            stats.messages += 1
            self._notify(instrument_id, trades)

    def _new_stream(self, session_id: str) -> None:
        """The first response of a stream: every book waits for its snapshot on it."""
        if self.session_id is not None and session_id != self.session_id:
            log.info("feed at %s has a new session %s (was %s)", self.address, session_id, self.session_id)
            self._take_instruments(self._listed)  # a restarted feed: its own list, as this connection got it
        self.session_id = session_id
        self.stats.sessions += 1
        self.state = ConnectionState.LIVE
        self.problem = None
        self._live_since = asyncio.get_running_loop().time()
        self._resyncs.cancel_all()
        for sync in self._syncs.values():
            sync.entry.session_id = session_id
            self._handle(sync, sync.reset())

