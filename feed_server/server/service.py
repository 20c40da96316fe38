"""The gRPC ``marketdata.v1.MarketData`` service: a thin adapter over the feed core (feed_server.server.feed_core).

The core validates every request before anything is streamed: an unknown instrument id ends the call with
``NOT_FOUND``; a depth over 100, a repeated id or more than 100 ids with ``INVALID_ARGUMENT``. The status
message names the bad value. Every RequestError the core raises ends the call
with its status in one place, :func:`_abort`: once the fan-out is closed (the feed is stopping, or its engine
failed) Subscribe and GetSnapshot end with ``UNAVAILABLE`` and the reason.

A stream ends when the fan-out ends its subscription: normally (status OK) when the feed stops, and with
``UNAVAILABLE`` and the failure's reason when the feed is broken (``failure()`` says why). A GetSnapshot answer
carries the server's ``session_id``, so a consumer never applies a snapshot of another run to its book.

Stream items under load. A stream sends everything its subscription has buffered as one item, at once: at low
rates one message per item, with nothing held back. Each item costs both processes a wake-up and a socket write
and read, a fixed price (about a hundred microseconds of CPU on each side on a small virtual machine) whatever
its size. So when an item carried ``BUSY_MESSAGES`` messages or more (the feed is busy: thousands of events per
second), the stream waits ``BUSY_PAUSE_S`` before taking the next batch: the next item then carries a few
milliseconds of messages, and the per-item price is paid a few hundred times a second instead of a thousand.
The added delay (at most ``BUSY_PAUSE_S``) exists only under load, when it is far below the latency targets.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Iterable

import grpc

from feed_server.protocol.errors import FeedStopped, RequestError
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.pb import market_data_pb2_grpc
from feed_server.rpc.status import to_grpc
from feed_server.server.faults import FAULT_KINDS, FaultInjector
from feed_server.server.feed_core import FeedCore

__all__ = ["BUSY_MESSAGES", "BUSY_PAUSE_S", "MarketDataServicer"]

logger = logging.getLogger(__name__)

BUSY_MESSAGES = 4  # an item with this many messages means the feed is busy: pause before the next one
BUSY_PAUSE_S = 0.003  # the pause: the next item gathers this much more (see the module docstring)


class MarketDataServicer(market_data_pb2_grpc.MarketDataServicer):  # type: ignore[misc]
    """The MarketData RPCs over a feed core: requests in, answers and RequestErrors (as statuses) out."""

    def __init__(
        self,
        core: FeedCore,
        *,
        fault_rate: float = 0.0,
        fault_kinds: Iterable[str] = FAULT_KINDS,
        fault_seed: int = 0,
    ) -> None:
        self._core = core
        self._fault_rate = fault_rate
        self._fault_kinds = frozenset(fault_kinds)
        self._fault_seeds = itertools.count(fault_seed * 1_000_003)

    async def ListInstruments(
        self, request: pb.ListInstrumentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInstrumentsResponse:
        return self._core.instruments

    async def GetSnapshot(self, request: pb.SnapshotRequest, context: grpc.aio.ServicerContext) -> pb.BookMessage:
        try:
            return self._core.snapshot(request.instrument_id, request.depth)
        except RequestError as exc:
            await _abort(context, exc)
            raise  # not reached: abort() raises

    async def Subscribe(
        self, request: pb.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SubscribeResponse]:
        try:
            subscription = self._core.subscribe(list(request.instrument_ids), request.depth)
        except RequestError as exc:
            await _abort(context, exc)
        injector = (
            FaultInjector(self._fault_rate, self._fault_kinds, next(self._fault_seeds)) if self._fault_rate else None
        )
        logger.info(
            "stream %d opened: %d instruments at depth %d",
            subscription.sub_id,
            len(subscription.instrument_ids),
            subscription.depth,
        )
        try:
            async for batch in subscription:
                if injector is not None:
                    batch = injector.apply(batch)
                    if not batch:
                        continue
                yield pb.SubscribeResponse(session_id=subscription.session_id, messages=batch)
                if len(batch) >= BUSY_MESSAGES:
                    await asyncio.sleep(BUSY_PAUSE_S)
            failure = self._core.failure()  # the fan-out ended the subscription: the feed stopped, or broke
            if failure is not None:
                await _abort(context, FeedStopped(failure))
        finally:
            self._core.unsubscribe(subscription)
            logger.info(
                "stream %d closed: %d messages, %d resyncs%s",
                subscription.sub_id,
                subscription.delivered,
                subscription.resyncs,
                f", faults {dict(injector.counts)}" if injector is not None else "",
            )


async def _abort(context: grpc.aio.ServicerContext, error: RequestError) -> None:
    """End the call with the error's status and message (the boundary where RequestError becomes a status)."""
    await context.abort(to_grpc(error.code), str(error))
