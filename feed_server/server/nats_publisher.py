"""The feed on NATS (``python -m feed_server --publish nats://...``): every message published once, at full depth.

:class:`NatsPublisher` is one more subscriber of the fan-out (every instrument, at the source's full depth), so
it shares the fan-out's guarantees: the engine never waits for it (a publisher that falls ``max_backlog``
messages behind is resynchronised with fresh snapshots, which it publishes like any message), and what it
publishes is exactly what a gRPC subscriber at full depth receives. Its one task sends each message, as the same
``BookMessage`` bytes as on gRPC, to the instrument's subject with the session in a header
(feed_server.bus.subjects); it also answers snapshot requests (any depth up to the full one, errors as a status
header) and instrument-list requests. With fault injection on (``--fault-rate``) the published stream gets its
own faults, as each gRPC stream does (snapshot replies are never faulted).

At start-up it asks NATS which instruments other feeds publish already: an instrument published twice would
give consumers two sequences for one book, so the second feed refuses to start (DuplicateInstrument, one line).
While the NATS server is away the client reconnects by itself (feed_server.bus.connection); messages it cannot
buffer meanwhile are dropped and counted (``publish_errors``): consumers see the gap in the sequence and ask
for a snapshot, as on gRPC.
"""

from __future__ import annotations

import asyncio
import logging

import nats
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg

from feed_server.bus.connection import BusLink, connect, gather
from feed_server.bus.subjects import (
    ERROR_HEADER,
    ERROR_MESSAGE_HEADER,
    INSTRUMENTS_SUBJECT,
    SESSION_HEADER,
    SNAPSHOT_PREFIX,
    book_subject,
    instrument_of,
    snapshot_subject,
)
from feed_server.protocol.errors import InvalidRequest, MarketDataError, RequestError
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.server.faults import FaultInjector
from feed_server.server.feed_core import FeedCore
from feed_server.server.subscription import Subscription

__all__ = ["DUPLICATE_CHECK_S", "DuplicateInstrument", "NatsPublisher"]

logger = logging.getLogger(__name__)

DUPLICATE_CHECK_S = 0.3  # how long start() gathers the other feeds' instrument lists


class DuplicateInstrument(MarketDataError):
    """Another feed already publishes one of this feed's instruments on the same NATS."""


class NatsPublisher:
    """Publishes a fan-out's messages to NATS and answers its requests (see the module docstring)."""

    def __init__(
        self,
        url: str,
        core: FeedCore,
        injector: FaultInjector | None = None,
    ) -> None:
        self.url = url
        self.injector = injector  # faults on the published stream (--fault-rate), as on each gRPC stream
        self.core = core
        self.link: BusLink | None = None
        self.published = 0  # messages handed to NATS
        self.published_changes = 0  # the level changes in them
        self.publish_errors = 0  # messages NATS could not take (disconnected with a full buffer)
        self._subjects = {iid: book_subject(iid) for iid in core.instrument_ids}
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (the start-up deadline)
        """Connect, refuse instruments published already, answer requests, and start publishing.

        Raises BusUnavailable (NATS unreachable within ``timeout``) or DuplicateInstrument."""
        self.link = link = await connect(self.url, name="feed_server", timeout=timeout)
        try:
            await self._refuse_duplicates(link)
            client = link.client
            await client.subscribe(INSTRUMENTS_SUBJECT, cb=self._on_instruments)
            for iid in self.core.instrument_ids:
                await client.subscribe(snapshot_subject(iid), cb=self._on_snapshot)
            await client.flush()
        except BaseException:
            await link.close()
            raise
        self._subscription = self.core.subscribe(None, self.core.max_depth)
        self._task = asyncio.create_task(self._run(link, self._subscription), name="nats-publisher")
        logger.info("publishing %d instruments to the NATS server at %s", len(self._subjects), self.url)

    async def stop(self) -> None:
        """Stop publishing (what was handed to NATS is flushed, bounded) and close the connection."""
        if self._subscription is not None:
            self.core.unsubscribe(self._subscription)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        link = self.link
        if link is not None:
            await link.drain()

    async def _refuse_duplicates(self, link: BusLink) -> None:
        mine = set(self.core.instrument_ids)
        for answer in await gather(link.client, INSTRUMENTS_SUBJECT, b"", DUPLICATE_CHECK_S):
            try:
                theirs = {i.instrument_id for i in pb.ListInstrumentsResponse.FromString(answer.data).instruments}
            except DecodeError:
                continue
            taken = sorted(mine & theirs)
            if taken:
                session = (answer.headers or {}).get(SESSION_HEADER, "?")
                raise DuplicateInstrument(
                    f"{', '.join(taken)} already published on the NATS server at {self.url} by another feed "
                    f"(session {session}); give each feed its own --instruments"
                )

    async def _run(self, link: BusLink, subscription: Subscription) -> None:
        publish = link.client.publish
        subjects = self._subjects
        injector = self.injector
        async for batch in subscription:
            if injector is not None:
                batch = injector.apply(batch)
            headers = {SESSION_HEADER: subscription.session_id}
            for message in batch:
                try:
                    await publish(subjects[message.instrument_id], message.SerializeToString(), headers=headers)
                except (nats.errors.Error, OSError):
                    self.publish_errors += 1
                else:
                    self.published += 1
                    if message.HasField("update"):
                        self.published_changes += len(message.update.changes)

    async def _reply(self, msg: Msg, payload: bytes, headers: dict[str, str]) -> None:
        if msg.reply and self.link is not None:
            await self.link.client.publish(msg.reply, payload, headers=headers)

    async def _on_instruments(self, msg: Msg) -> None:
        await self._reply(msg, self.core.instruments.SerializeToString(), {SESSION_HEADER: self.core.session_id})

    async def _on_snapshot(self, msg: Msg) -> None:
        try:
            instrument_id = instrument_of(msg.subject, SNAPSHOT_PREFIX)
            try:
                request = pb.SnapshotRequest.FromString(msg.data)
            except DecodeError:
                raise InvalidRequest("the request is not a SnapshotRequest") from None
            snapshot = self.core.snapshot(instrument_id, request.depth)
        except RequestError as exc:
            await self._reply(msg, b"", {ERROR_HEADER: exc.code.value, ERROR_MESSAGE_HEADER: str(exc)})
            return
        await self._reply(msg, snapshot.SerializeToString(), {SESSION_HEADER: snapshot.session_id})
