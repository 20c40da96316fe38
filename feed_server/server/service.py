"""The gRPC ``marketdata.v1.MarketData`` service: a thin layer connecting the RPCs to the fan-out.

Requests are validated before anything is streamed: an unknown instrument id ends the call with
``NOT_FOUND``; a depth over 100, a repeated id or more than 100 ids with ``INVALID_ARGUMENT``. The status
message names the bad value. Every RequestError raised below the service (validation, the fan-out) ends the call
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
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

import grpc

from feed_server.protocol.book import DEFAULT_DEPTH, MAX_DEPTH
from feed_server.protocol.errors import FeedStopped, InvalidRequest, NoSuchInstrument, RequestError
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.pb import market_data_pb2_grpc
from feed_server.protocol.wire import instrument_to_pb
from feed_server.rpc.status import to_grpc
from feed_server.server.fanout import Fanout
from feed_server.server.faults import FAULT_KINDS, FaultInjector

__all__ = [
    "BUSY_MESSAGES",
    "BUSY_PAUSE_S",
    "MAX_INSTRUMENT_IDS",
    "MarketDataServicer",
    "instrument_listing",
    "validate_request",
]

logger = logging.getLogger(__name__)

MAX_INSTRUMENT_IDS = 100
BUSY_MESSAGES = 4  # an item with this many messages means the feed is busy: pause before the next one
BUSY_PAUSE_S = 0.003  # the pause: the next item gathers this much more (see the module docstring)
_MAX_ID_SHOWN = 64


def _shown(instrument_id: str) -> str:
    """An id as quoted in an error message: repr, cut when long."""
    if len(instrument_id) > _MAX_ID_SHOWN:
        return repr(instrument_id[:_MAX_ID_SHOWN]) + f"... ({len(instrument_id)} characters)"
    return repr(instrument_id)


def validate_request(
    instrument_ids: Sequence[str], depth: int, known: Iterable[str], max_depth: int = MAX_DEPTH
) -> tuple[list[str], int]:
    """The ids (all of ``known`` when empty) and the effective depth (0: the default, at most ``max_depth``);
    raises a RequestError when invalid. (A depth over ``max_depth`` is the fan-out's to refuse, with its reason.)"""
    default = min(DEFAULT_DEPTH, max_depth)
    if not 0 <= depth <= MAX_DEPTH:
        raise InvalidRequest(f"depth {depth} out of range: 1..{MAX_DEPTH} (0 means the default, {default})")
    if len(instrument_ids) > MAX_INSTRUMENT_IDS:
        raise InvalidRequest(f"too many instrument ids: {len(instrument_ids)} (at most {MAX_INSTRUMENT_IDS})")
    known_ids = list(known)
    known_set = set(known_ids)
    seen: set[str] = set()
    for iid in instrument_ids:
        if iid in seen:
            raise InvalidRequest(f"duplicate instrument id {_shown(iid)}")
        seen.add(iid)
        if iid not in known_set:
            raise NoSuchInstrument(f"unknown instrument id {_shown(iid)}")
    return (list(instrument_ids) or known_ids), (depth or default)


def instrument_listing(
    specs: Iterable[InstrumentSpec], source: str = "", max_depth: int = MAX_DEPTH
) -> pb.ListInstrumentsResponse:
    """The answer to ListInstruments (on gRPC, and on NATS: feed_server.server.nats_publisher)."""
    return pb.ListInstrumentsResponse(
        instruments=[instrument_to_pb(spec) for spec in specs], source=source, max_depth=max_depth
    )


class MarketDataServicer(market_data_pb2_grpc.MarketDataServicer):  # type: ignore[misc]
    """Serves the instruments, and the fan-out's streams and snapshots."""

    def __init__(
        self,
        specs: Iterable[InstrumentSpec],
        fanout: Fanout,
        *,
        source: str = "",
        max_depth: int = MAX_DEPTH,
        fault_rate: float = 0.0,
        fault_kinds: Iterable[str] = FAULT_KINDS,
        fault_seed: int = 0,
        failure: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._fanout = fanout
        self._failure = failure  # why the feed is broken, or None (see the module docstring)
        self._fault_rate = fault_rate
        self._fault_kinds = frozenset(fault_kinds)
        self._fault_seeds = itertools.count(fault_seed * 1_000_003)
        self._instruments = instrument_listing(specs, source, max_depth)

    async def ListInstruments(
        self, request: pb.ListInstrumentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInstrumentsResponse:
        return self._instruments

    async def GetSnapshot(self, request: pb.SnapshotRequest, context: grpc.aio.ServicerContext) -> pb.BookMessage:
        try:
            fanout = self._fanout
            ids, depth = validate_request([request.instrument_id], request.depth, fanout.sources, fanout.max_depth)
            snapshot = fanout.get_snapshot(ids[0], depth)
        except RequestError as exc:
            await _abort(context, exc)
        snapshot.session_id = fanout.session_id  # a message built for this call alone
        return snapshot

    async def Subscribe(
        self, request: pb.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SubscribeResponse]:
        try:
            fanout = self._fanout
            ids, depth = validate_request(list(request.instrument_ids), request.depth, fanout.sources, fanout.max_depth)
            subscription = fanout.subscribe(ids, depth)
        except RequestError as exc:
            await _abort(context, exc)
        injector = (
            FaultInjector(self._fault_rate, self._fault_kinds, next(self._fault_seeds)) if self._fault_rate else None
        )
        logger.info("stream %d opened: %d instruments at depth %d", subscription.sub_id, len(ids), depth)
        try:
            async for batch in subscription:
                if injector is not None:
                    batch = injector.apply(batch)
                    if not batch:
                        continue
                yield pb.SubscribeResponse(session_id=subscription.session_id, messages=batch)
                if len(batch) >= BUSY_MESSAGES:
                    await asyncio.sleep(BUSY_PAUSE_S)
            failure = self._failure()  # the fan-out ended the subscription: the feed stopped, or broke
            if failure is not None:
                await _abort(context, FeedStopped(failure))
        finally:
            self._fanout.unsubscribe(subscription)
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
