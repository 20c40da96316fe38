"""The feed subscriber over NATS (``nats://HOST:PORT``): the same books, syncs and resyncs as over gRPC.

Feeds started with ``--publish`` publish every message of every instrument once, at full depth, to the
instrument's subject (feed_server.bus.subjects). :class:`BusSubscriber` is the transport adapter of
feed_server.client.keeper for that stream; every check is the gRPC path's own (feed_server.client.sync):

- **Instruments**: a request on ``marketdata.v1.instruments`` gathers every feed's answer for ``list_window``
  seconds (sharded feeds each answer for their own instruments). No answer at all is a failed connection, retried
  as any. A message of an instrument no answer named (a feed started later) makes it ask again.
- **Sessions are per instrument**: each message carries its feed's session (``Marketdata-Session``), and sharded
  feeds each have their own. A new session of one instrument starts that book over, and a snapshot of another
  session than the instrument's stream is never applied.
- **Joining**: the stream does not open with snapshots; the first message of an instrument (or the first after a
  silence or a new session) buffers the stream and asks the feed for a snapshot (request/reply on
  ``marketdata.v1.snapshot.<id>``), which the buffered messages then continue, as after a gap.
- **Depth**: the books are kept at the depth the feed publishes (every checksum is of that depth); a consumer
  asking for fewer levels reads the top of the same verified book.
- **Silence**: an instrument without a message for ``heartbeat_timeout`` seconds (feeds send heartbeats) is
  marked stale, alone (time this process was too busy to read does not count): a dead shard stales its own
  instruments, the others keep flowing. A lost NATS server marks every book stale at once; the client
  reconnects by itself (feed_server.bus.connection) and every book comes back through a snapshot.
- **Slow consumer**: a process that falls behind holds at most ``pending_limit`` unhandled messages (and 64 MiB)
  per subscription; the NATS client drops the ones beyond (a SlowConsumerError, logged), which are gaps in the
  sequence, repaired by a snapshot like any gap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

import nats
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg

from feed_server.bus.connection import BusLink, BusUnavailable, connect, gather
from feed_server.bus.subjects import (
    BOOK_PREFIX,
    ERROR_HEADER,
    ERROR_MESSAGE_HEADER,
    INSTRUMENTS_SUBJECT,
    SESSION_HEADER,
    book_subject,
    instrument_of,
    snapshot_subject,
)
from feed_server.client.keeper import BookKeeper, ConnectionState
from feed_server.client.resync import SNAPSHOT_TIMEOUT
from feed_server.client.rpc import decode
from feed_server.client.sync import WAITING_FOR_SNAPSHOT, InstrumentSync, SyncState
from feed_server.protocol.book import MAX_DEPTH
from feed_server.protocol.errors import Code, FeedUnavailable, InvalidMessage, feed_error
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.wire import instrument_from_pb

__all__ = ["LIST_WINDOW", "BusSubscriber", "list_bus_instruments"]

log = logging.getLogger("feed_server.client.subscriber")  # the subscriber's log lines, as users grep them

LIST_WINDOW = 0.3  # seconds during which the feeds' answers to an instrument-list request are gathered
WATCH_INTERVAL = 0.1  # seconds between two checks of the connection and of each instrument's silence
RELIST_INTERVAL = 2.0  # at most one new instrument-list request this often (an unknown instrument was seen)
JOINING = "joining the stream: waiting for a snapshot"
PENDING_LIMIT = 100_000  # messages received and not yet handled, per subscription; NATS drops the ones beyond
PENDING_BYTES_LIMIT = 64 * 1024 * 1024  # the same, in bytes


class BusSubscriber(BookKeeper):
    """Subscribes to instruments published on NATS and keeps their books. See the module docstring."""

    def __init__(
        self,
        address: str,
        instrument_ids: Sequence[str] = (),
        depth: int = MAX_DEPTH,
        *,
        list_window: float = LIST_WINDOW,
        pending_limit: int = PENDING_LIMIT,
        **options: Any,
    ) -> None:
        """``options`` are BookKeeper's (``reconnect``, ``heartbeat_timeout``, the backoffs, ``seed``)."""
        super().__init__(address, instrument_ids, depth, **options)
        self.list_window = list_window
        self.pending_limit = pending_limit
        self._depths: dict[str, int] = {}  # per instrument: the depth its feed publishes
        self._last_seen: dict[str, float] = {}  # per instrument: when its last message arrived (loop time)
        self._ids: dict[str, str] = {}  # subject -> instrument id, for the subjects seen
        self._unknown: set[str] = set()  # instruments seen on the stream that no listing named
        self._link: BusLink | None = None

    # ------------------------------------------------------------------ BookKeeper's transport hooks
    def _session_of(self, instrument_id: str) -> str | None:
        entry = self.books.get(instrument_id)
        return entry.session_id if entry is not None else None

    def _book_depth(self, instrument_id: str) -> int:
        return self._depths.get(instrument_id, MAX_DEPTH)

    async def _connect_once(self) -> None:
        self._live_since = None
        try:
            link = await connect(self.address, name="marketdata-consumer", timeout=max(self.heartbeat_timeout, 2.0))
        except BusUnavailable as exc:
            raise FeedUnavailable(str(exc)) from None
        self._link = link
        try:
            await self._list(link, first=True)
            # Before subscribing: a message may arrive during the awaits below, and its snapshot request must start.
            self._resyncs.fetch = partial(self._fetch_snapshot, link)
            subjects = [book_subject(iid) for iid in self.instrument_ids] or [BOOK_PREFIX + ">"]
            for subject in subjects:
                await link.client.subscribe(
                    subject,
                    cb=self._on_message,
                    pending_msgs_limit=self.pending_limit,
                    pending_bytes_limit=PENDING_BYTES_LIMIT,
                )
            await link.client.flush()
            self.state = ConnectionState.LIVE
            self.problem = None
            self._live_since = asyncio.get_running_loop().time()
            await self._watch(link)
        finally:
            self._resyncs.fetch = None
            self._resyncs.cancel_all()
            self._link = None
            await link.close()

    # ------------------------------------------------------------------ instruments
    async def _list(self, link: BusLink, *, first: bool = False) -> None:
        """Gather the feeds' instrument lists and take their union (the instruments known already are kept:
        a feed that is down still has its books, stale)."""
        listings = await _gather_listings(link, self.list_window)
        if not listings and first:
            raise FeedUnavailable(
                f"no feed publishes on the NATS server at {self.address} "
                f"(no answer to {INSTRUMENTS_SUBJECT} within {self.list_window:g} s)"
            )
        listed: dict[str, InstrumentSpec] = {}
        sources: list[str] = []
        for specs, source, depth in listings:
            for spec in specs:
                listed.setdefault(spec.instrument_id, spec)
                self._depths.setdefault(spec.instrument_id, depth)
            if source and source not in sources:
                sources.append(source)
        if sources:
            self.source = f"{'; '.join(sources)}, via {self.address}"  # the page shows "Source: ..."
        self._unknown.difference_update(listed)
        self._take_instruments({**listed, **self.instruments})  # the known specs win, as within a session

    # ------------------------------------------------------------------ the stream
    async def _on_message(self, msg: Msg) -> None:
        subject = msg.subject
        instrument_id = self._ids.get(subject)
        if instrument_id is None:
            try:
                instrument_id = instrument_of(subject)
            except ValueError:
                return  # not a subject this contract writes
            if len(self._ids) < 100_000:
                self._ids[subject] = instrument_id
        sync = self._syncs.get(instrument_id)
        if sync is None:
            if not self.instrument_ids:
                self._unknown.add(instrument_id)
            return
        self._last_seen[instrument_id] = asyncio.get_running_loop().time()
        headers = msg.headers
        session = headers.get(SESSION_HEADER, "") if headers else ""
        if session != sync.entry.session_id:
            self._new_session(sync, session)
        try:
            message = pb.BookMessage.FromString(msg.data)
            problem = "" if message.instrument_id == instrument_id else f"a message of {message.instrument_id!r}"
        except DecodeError as exc:
            problem = f"a message that does not decode ({exc})"
        if problem:
            sequence = sync.entry.book.sequence or 0
            self._handle(sync, sync.on_unreadable(InvalidMessage(instrument_id, sequence, problem)))
            return
        if sync.state is SyncState.WAITING:
            self._handle(sync, sync.request_resync(_joining(sync)))
        trades = sync.on_live_message(message)
        if trades is None:
            self._handle(sync, sync.on_stream(message))
            return
        self.stats.messages += 1
        self._notify(instrument_id, trades)

    def _new_session(self, sync: InstrumentSync, session: str) -> None:
        entry = sync.entry
        if entry.session_id is not None:
            log.info("%s: new feed session %s (was %s)", sync.instrument_id, session, entry.session_id)
        entry.session_id = session
        self.stats.sessions += 1
        self._resyncs.cancel(sync.instrument_id)
        self._handle(sync, sync.reset(_joining(sync)))

    async def _fetch_snapshot(self, link: BusLink, request: pb.SnapshotRequest) -> pb.BookMessage:
        subject = snapshot_subject(request.instrument_id)
        where = f"the NATS server at {self.address}"
        try:
            reply = await link.client.request(subject, request.SerializeToString(), timeout=SNAPSHOT_TIMEOUT)
        except nats.errors.NoRespondersError:
            raise FeedUnavailable(f"no feed answers {subject} on {where}") from None
        except nats.errors.TimeoutError:
            raise FeedUnavailable(f"no answer on {subject} from {where} within {SNAPSHOT_TIMEOUT:g} s") from None
        except (nats.errors.Error, OSError) as exc:
            raise FeedUnavailable(f"snapshot request on {subject} to {where} failed: {exc!r}") from None
        headers = reply.headers or {}
        status = headers.get(ERROR_HEADER)
        if status is not None:
            code = Code(status) if status in Code.__members__.values() else Code.INTERNAL
            raise feed_error(code, headers.get(ERROR_MESSAGE_HEADER) or f"{status} ({subject})")
        return decode(pb.BookMessage, reply.data, self.address, subject)

    # ------------------------------------------------------------------ watching
    async def _watch(self, link: BusLink) -> None:
        """Until the connection closes: follow the NATS connection, stale each silent instrument, and list the
        instruments again when unknown ones appear."""
        loop = asyncio.get_running_loop()
        timeout = self.heartbeat_timeout
        lost = f"lost the NATS server at {self.address}; reconnecting"
        last_list = loop.time()
        while True:
            due = loop.time() + WATCH_INTERVAL
            await asyncio.sleep(WATCH_INTERVAL)
            late = loop.time() - due
            if late > WATCH_INTERVAL:
                # This process was busy (its messages may still wait unread in the client's queue): the time it
                # could not read is no silence of the feeds.
                for instrument_id in self._last_seen:
                    self._last_seen[instrument_id] += late
            if link.client.is_closed:
                raise FeedUnavailable(f"the connection to the NATS server at {self.address} closed")
            if not link.connected:
                if self.problem != lost:
                    self.problem = lost
                    self.state = ConnectionState.RECONNECTING
                    self._connection_lost(f"feed connection lost: {lost}")
                continue
            if self.problem is not None:
                self.problem = None
                self.state = ConnectionState.LIVE
                self.stats.reconnects += 1
            now = loop.time()
            for instrument_id, sync in self._syncs.items():
                if sync.state is SyncState.WAITING:
                    continue
                seen = self._last_seen.get(instrument_id)
                if seen is None or now - seen > timeout:
                    self.stats.watchdog_timeouts += 1
                    self._handle(sync, sync.reset(f"no message for {instrument_id} on NATS for {timeout:g} s"))
            if self._unknown and now - last_list >= RELIST_INTERVAL:
                last_list = now
                await self._list(link)


def _joining(sync: InstrumentSync) -> str:
    """The stale reason while joining the stream: a book still waiting for its first snapshot keeps saying so
    (no listener call for a change of words only, as on gRPC, where the first snapshot comes on the stream)."""
    return WAITING_FOR_SNAPSHOT if sync.entry.stale_reason == WAITING_FOR_SNAPSHOT else JOINING


async def _gather_listings(link: BusLink, window: float) -> list[tuple[list[InstrumentSpec], str, int]]:
    """Every feed's instrument list: (specs, source, depth) per answer; answers that do not decode are skipped."""
    try:
        answers = await gather(link.client, INSTRUMENTS_SUBJECT, b"", window)
    except (nats.errors.Error, OSError) as exc:
        raise FeedUnavailable(f"instrument list request to the NATS server at {link.url} failed: {exc!r}") from None
    listings = []
    for answer in answers:
        try:
            response = pb.ListInstrumentsResponse.FromString(answer.data)
        except DecodeError:
            log.warning("ignoring an instrument list that does not decode from the NATS server at %s", link.url)
            continue
        specs = []
        for message in response.instruments:
            try:
                specs.append(instrument_from_pb(message))
            except ValueError as exc:
                log.warning("ignoring instrument from the NATS server at %s: %s", link.url, exc)
        listings.append((specs, response.source, response.max_depth or MAX_DEPTH))
    return listings


async def list_bus_instruments(url: str, timeout: float = 5.0) -> list[InstrumentSpec]:  # noqa: ASYNC109 (the start-up deadline)
    """Every instrument the feeds publishing on the NATS server at ``url`` have. Raises FeedUnavailable."""
    try:
        link = await connect(url, name="marketdata-consumer", timeout=timeout)
    except BusUnavailable as exc:
        raise FeedUnavailable(str(exc)) from None
    try:
        listings = await _gather_listings(link, LIST_WINDOW)
    finally:
        await link.close()
    if not listings:
        raise FeedUnavailable(f"no feed publishes on the NATS server at {url} (no answer within {LIST_WINDOW:g} s)")
    return [spec for specs, _, _ in listings for spec in specs]
