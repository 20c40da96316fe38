"""One subscriber's resynchronisations: a snapshot request task per broken instrument, paced, from the right session.

When the sync state machine finds an instrument broken (a gap, a mismatch), the subscriber asks :class:`Resyncs`
for a snapshot of it. Each instrument has at most one request task at a time; the first fault after a clean
minute is repaired at once, repeated faults space their requests out (feed_server.pacing.ResyncPacer),
a failed request is retried after the next delay, and an answer from another session of the feed than the
stream's is dropped, never applied. How a snapshot is fetched is the transport's business: ``fetch`` (set while
a connection is open) asks the feed over gRPC (GetSnapshot) or NATS (request/reply). The tasks belong to the
Resyncs object: they end with the stream (``cancel_all``), or when the instrument no longer needs them
(``cancel``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from feed_server.client.stats import SubscriberStats
from feed_server.pacing import ResyncPacer, Throttle
from feed_server.protocol.errors import FeedError
from feed_server.protocol.pb import market_data_pb2 as pb

__all__ = ["SNAPSHOT_TIMEOUT", "Resyncs", "SnapshotFetch"]

log = logging.getLogger("feed_server.client.subscriber")  # the subscriber's log lines, as users grep them

SNAPSHOT_TIMEOUT = 5.0

SnapshotFetch = Callable[[pb.SnapshotRequest], Awaitable[pb.BookMessage]]
"""Asks the feed for one snapshot: the decoded answer, or a FeedError (within SNAPSHOT_TIMEOUT seconds)."""


class Resyncs:
    """The snapshot requests of one subscriber (see the module docstring).

    ``on_snapshot(instrument_id, snapshot)`` receives each usable snapshot; ``on_failure(instrument_id, error)``
    an unexpected exception (a bug) that ended a request. ``depth(instrument_id)`` gives the depth to ask for,
    ``session(instrument_id)`` the session id of the instrument's stream. ``fetch`` is set by the subscriber
    while a connection is open (None: no request can start).
    """

    def __init__(
        self,
        depth: Callable[[str], int],
        stats: SubscriberStats,
        throttle: Throttle,
        pacing: tuple[float, float, float, random.Random],
        *,
        on_snapshot: Callable[[str, pb.BookMessage], None],
        on_failure: Callable[[str, Exception], None],
        session: Callable[[str], str | None],
    ) -> None:
        self._depth = depth
        self.fetch: SnapshotFetch | None = None
        self._stats = stats
        self._throttle = throttle
        self._pacing = pacing  # initial, maximum, clean_after, rng
        self._on_snapshot = on_snapshot
        self._on_failure = on_failure
        self._session = session
        self._pacers: dict[str, ResyncPacer] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, instrument_id: str) -> None:
        """Request a snapshot of ``instrument_id`` (once: a request under way is not doubled)."""
        fetch = self.fetch
        if instrument_id in self._tasks or fetch is None:
            return
        pacer = self._pacers.get(instrument_id)
        if pacer is None:
            pacer = self._pacers[instrument_id] = ResyncPacer(*self._pacing)
        task = asyncio.create_task(
            self._resync(instrument_id, fetch, pacer, pacer.on_fault()), name=f"resync-{instrument_id}"
        )
        self._tasks[instrument_id] = task

    def cancel(self, instrument_id: str) -> None:
        task = self._tasks.pop(instrument_id, None)
        if task is not None:
            task.cancel()

    def cancel_all(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

    def forget(self, instrument_id: str) -> None:
        """The feed no longer has the instrument."""
        self.cancel(instrument_id)
        self._pacers.pop(instrument_id, None)

    async def _resync(self, instrument_id: str, fetch: SnapshotFetch, pacer: ResyncPacer, delay: float) -> None:
        try:
            snapshot = await self._fetch(instrument_id, fetch, pacer, delay)
        except Exception as exc:  # a bug: reported to the subscriber, which starts the instrument over
            self._done(instrument_id)
            self._on_failure(instrument_id, exc)
            return
        self._done(instrument_id)
        self._on_snapshot(instrument_id, snapshot)

    def _done(self, instrument_id: str) -> None:
        if self._tasks.get(instrument_id) is asyncio.current_task():
            del self._tasks[instrument_id]

    async def _fetch(
        self, instrument_id: str, fetch: SnapshotFetch, pacer: ResyncPacer, delay: float
    ) -> pb.BookMessage:
        """A snapshot of one instrument from the stream's session, retried (paced) until there is one."""
        request = pb.SnapshotRequest(instrument_id=instrument_id, depth=self._depth(instrument_id))
        while True:
            if delay > 0:
                await asyncio.sleep(delay)
            self._stats.snapshot_requests += 1
            try:
                snapshot = await fetch(request)
            except FeedError as error:
                delay = pacer.retry_delay()
                self._report(instrument_id, "snapshot", f"snapshot request failed: {error}", delay)
                continue
            session = self._session(instrument_id)
            if snapshot.session_id and snapshot.session_id != session:
                # The feed restarted since this stream began: never mix two sessions' books. The new stream's
                # own snapshots will come (or this request, retried, gets one of the stream's session).
                self._stats.foreign_snapshots += 1
                delay = pacer.retry_delay()
                text = f"snapshot of session {snapshot.session_id}, the stream is of session {session}: dropped"
                self._report(instrument_id, "session", text, delay, logging.INFO)
                continue
            return snapshot

    def _report(self, instrument_id: str, kind: str, text: str, delay: float, level: int = logging.WARNING) -> None:
        held = self._throttle.allow((instrument_id, kind))
        if held is not None:
            log.log(level, "%s: %s; retrying in %.2f s%s", instrument_id, text, delay, held.suffix("times"))
