"""The subscriber core: the books, their listeners and the life of a connection, whatever the transport.

:class:`Subscriber` holds the public surface of a subscriber (``books``, ``instruments``, ``source``, ``state``,
``problem``, ``stats``, listeners, ``wait_live``) and drives each instrument's sans-I/O sync state machine
(feed_server.client.sync) and its snapshot requests (feed_server.client.resync) for the instruments of its roster
(feed_server.client.roster). It is handed a transport (feed_server.client.transport.Transport): the gRPC one
(feed_server.client.grpc_transport) or the NATS one (feed_server.client.nats_transport). The transport opens one
connection at a time and hands what it reads to the core's transport-facing methods (the BookPort, below ``run``);
the core imports neither grpc nor nats, and the transports never touch its fields.

With ``reconnect=True`` (the default) ``run()`` never gives up until cancelled: any failure of a connection (a
FeedError of any kind, the end of the stream, ``heartbeat_timeout`` seconds of silence, a message that does not
decode, an unexpected exception while handling the stream) marks every book stale and it reconnects with backoff
(feed_server.client.reconnect tells how). ``problem`` says in one line why the books are not live. With
``reconnect=False`` the first failure is raised (the CLI's first connection).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from enum import StrEnum

from google.protobuf.message import DecodeError

from feed_server.client.failures import Failure
from feed_server.client.reconnect import Reconnects
from feed_server.client.resync import Resyncs
from feed_server.client.roster import Roster
from feed_server.client.stats import SubscriberStats
from feed_server.client.sync import WAITING_FOR_SNAPSHOT, InstrumentBook, InstrumentSync, Step, SyncState
from feed_server.client.transport import Transport
from feed_server.pacing import Backoff, Throttle
from feed_server.protocol.book import MAX_DEPTH, Trade
from feed_server.protocol.errors import BookError, FeedUnavailable, InvalidMessage
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.pb import market_data_pb2 as pb

__all__ = ["JOINING", "BookListener", "ConnectionState", "Subscriber"]

log = logging.getLogger("feed_server.client.subscriber")  # the subscriber's log lines, as users grep them

BookListener = Callable[[str, Sequence[Trade]], None]
"""Called as ``listener(instrument_id, trades)`` after every applied message and every change of the stale flag
or of the stale reason."""

LOG_INTERVAL = 5.0  # seconds between two log lines of the same kind about one instrument
RESYNC_BACKOFF_INITIAL = 0.1
RESYNC_BACKOFF_MAX = 2.0
RESYNC_CLEAN_AFTER = 60.0  # seconds without a fault after which an instrument's next resync is immediate again
JOINING = "joining the stream: waiting for a snapshot"


class ConnectionState(StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"


class Subscriber:
    """A subscriber's books and connection life over ``transport``. See the module docstring."""

    def __init__(
        self,
        transport: Transport,
        instrument_ids: Sequence[str] = (),
        depth: int = MAX_DEPTH,
        *,
        reconnect: bool = True,
        heartbeat_timeout: float = 2.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        resync_backoff_initial: float = RESYNC_BACKOFF_INITIAL,
        resync_backoff_max: float = RESYNC_BACKOFF_MAX,
        log_interval: float = LOG_INTERVAL,
        seed: int | None = None,
    ) -> None:
        if not 1 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be between 1 and {MAX_DEPTH}, got {depth}")
        self.transport = transport
        self.address = transport.address
        self.instrument_ids: tuple[str, ...] = tuple(instrument_ids)
        self.depth = depth
        self.reconnect = reconnect  # read at each failure: may be switched on while running (the CLI does)
        self.heartbeat_timeout = heartbeat_timeout
        self.state = ConnectionState.CONNECTING
        self.session_id: str | None = None
        self.problem: str | None = None
        """Why the books are not live, in one line for a person; None while connected and streaming."""
        self.source = ""  # what the feed plays, as its last ListInstruments said ("replay of s.mdrec at 10x")
        self._roster = Roster(self.instrument_ids, depth, dropped=lambda gone: self._resyncs.forget(gone))
        self.books: dict[str, InstrumentBook] = self._roster.books  # the roster's own dict (only it changes it)
        self._last_seen: dict[str, float] = {}  # per instrument: when its last message arrived (loop time)
        self.stats = SubscriberStats()
        self._rng = random.Random(seed)
        self._throttle = Throttle(log_interval)
        self._reconnects = Reconnects(self.address, self.stats, Backoff(backoff_initial, backoff_max, self._rng))
        self._listeners: list[BookListener] = []
        self._resyncs = Resyncs(
            self._roster.depth_of,
            self.stats,
            self._throttle,
            (resync_backoff_initial, resync_backoff_max, RESYNC_CLEAN_AFTER, self._rng),
            on_snapshot=self._on_snapshot,
            on_failure=self._on_resync_failure,
            session=self._roster.session_of,
        )
        self._live = asyncio.Event()
        self.failure: Exception | None = None
        """The error that ended the last failed connection (None before any failure)."""
        self.changed = asyncio.Event()
        """Set when the instruments are taken from a listing and when a connection fails; its waiter clears it."""
        self._stopped = asyncio.Event()
        self._error: BaseException | None = None
        self._running = False

    # ------------------------------------------------------------------ public API
    @property
    def instruments(self) -> dict[str, InstrumentSpec]:
        """The feed's instruments, by id, as its listings name them (a new dict with each listing taken)."""
        return self._roster.instruments

    def add_listener(self, listener: BookListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: BookListener) -> None:
        try:
            self._listeners.remove(listener)
        except ValueError:
            pass

    async def wait_live(self, timeout: float) -> None:  # noqa: ASYNC109 (part of the public API)
        """Wait until every subscribed book is live (not stale).

        Raises TimeoutError after ``timeout`` seconds, or the error that stopped ``run()`` if it stopped.
        """
        async with asyncio.timeout(timeout):
            while not self._live.is_set():
                if self._stopped.is_set():
                    raise self._error or FeedUnavailable("the subscriber stopped")
                live = asyncio.ensure_future(self._live.wait())
                stopped = asyncio.ensure_future(self._stopped.wait())
                try:
                    await asyncio.wait({live, stopped}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    live.cancel()
                    stopped.cancel()

    async def run(self) -> None:
        """Subscribe and keep the books until cancelled (or, with ``reconnect=False``, the connection ends).

        With ``reconnect`` it returns only by cancellation. Without, it raises the first failure: UnknownInstrument
        / BadRequest when the server refuses the request, FeedUnavailable on a lost connection, FeedError for any
        other status, and an unexpected exception as it is.
        """
        if self._running:
            raise RuntimeError("FeedSubscriber.run() is already running")
        self._running = True
        self._stopped.clear()
        self._error = None
        try:
            await self._reconnects.run(self._connect_once, self._connection_failed, lambda: self.reconnect)
        except BaseException as exc:
            self._error = exc if isinstance(exc, Exception) else None
            raise
        finally:
            self._resyncs.cancel_all()
            self._mark_all_stale("the subscriber stopped")
            self.state = ConnectionState.STOPPED
            self._running = False
            self._stopped.set()

    # ------------------------------------------------------------------ one connection
    async def _connect_once(self) -> None:
        """One connection through the transport; returns or raises (FeedError) when it ends."""
        self._resyncs.fetch = self.transport.fetch_snapshot
        try:
            await self.transport.stream(self)
        finally:
            self._resyncs.fetch = None
            self._resyncs.cancel_all()

    def _connection_failed(self, error: Exception, failure: Failure) -> None:
        """A connection ended with ``error`` (told as ``failure``): every book stale, and ``problem`` says why."""
        self.failure = error
        self.changed.set()
        self.problem = failure.problem
        self._connection_lost(failure.book_reason)
        if self.state is ConnectionState.LIVE:
            self.state = ConnectionState.RECONNECTING

    # ------------------------------------------------------------------ the transport's side (BookPort)
    def take_listing(self, specs: Sequence[InstrumentSpec], source: str, depths: dict[str, int]) -> None:
        """Take the feed's instrument list of this connection, what it plays, and each instrument's stream depth
        (see Roster.take_listing). Raises UnknownInstrument for a subscribed id the list lacks."""
        self.source = source
        now = asyncio.get_running_loop().time()
        self._roster.take_listing(specs, depths, now, in_session=self.session_id is not None)
        self.changed.set()

    def stream_opened(self) -> None:
        """The connection streams: the subscriber is connected (its books go live as their messages come)."""
        self.state = ConnectionState.LIVE
        self.problem = None
        self._reconnects.streaming()

    def stream_batch(self, session_id: str, messages: Sequence[pb.BookMessage]) -> None:
        """Messages of one stream of one feed session (every instrument's, in order; it opens with a snapshot of
        each). The first batch of a stream, or one of a new session, starts every book over on it."""
        if session_id != self.session_id or self.state is not ConnectionState.LIVE:
            self._new_stream(session_id)
        syncs = self._roster.syncs
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

    def instrument_message(self, instrument_id: str, session_id: str, data: bytes) -> None:
        """One message of one instrument's own stream (sessions per instrument; no snapshot opens it): a new
        session starts that book over, and a book that waits for its snapshot asks for one."""
        sync = self._roster.syncs.get(instrument_id)
        if sync is None:
            self._roster.unlisted(instrument_id)
            return
        self._last_seen[instrument_id] = asyncio.get_running_loop().time()
        if session_id != sync.entry.session_id:
            self._new_session(sync, session_id)
        try:
            message = pb.BookMessage.FromString(data)
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

    def link_lost(self, reason: str) -> None:
        """The connection is down and being made again by the transport: every book stale with ``reason``."""
        if self.problem != reason:
            self.problem = reason
            self.state = ConnectionState.RECONNECTING
            self._connection_lost(f"feed connection lost: {reason}")

    def link_back(self) -> None:
        """The transport's connection is back (after link_lost): the books come back through snapshots."""
        if self.problem is not None:
            self.problem = None
            self.state = ConnectionState.LIVE
            self.stats.reconnects += 1

    def check_silence(self, busy_for: float, where: str) -> None:
        """Stale each instrument without a message for ``heartbeat_timeout`` seconds (``busy_for``: the time
        this process was too busy to read, which is no silence of the feed), alone."""
        for instrument_id in self._last_seen:
            self._last_seen[instrument_id] += busy_for
        now = asyncio.get_running_loop().time()
        timeout = self.heartbeat_timeout
        for instrument_id, sync in self._roster.syncs.items():
            if sync.state is SyncState.WAITING:
                continue
            seen = self._last_seen.get(instrument_id)
            if seen is None or now - seen > timeout:
                self.stats.watchdog_timeouts += 1
                self._handle(sync, sync.reset(f"no message for {instrument_id} {where} for {timeout:g} s"))

    def wants_listing(self) -> bool:
        """Whether instruments no listing named were seen, and the last listing is old enough to ask again."""
        return self._roster.wants_listing(asyncio.get_running_loop().time())

    def _connection_lost(self, reason: str) -> None:
        self._resyncs.cancel_all()
        self._mark_all_stale(reason)

    def _mark_all_stale(self, reason: str) -> None:
        for sync in self._roster.syncs.values():
            self._handle(sync, sync.reset(reason))

    def _new_stream(self, session_id: str) -> None:
        """The first response of a stream: every book waits for its snapshot on it."""
        if self.session_id is not None and session_id != self.session_id:
            log.info("feed at %s has a new session %s (was %s)", self.address, session_id, self.session_id)
            self._roster.new_session()  # a restarted feed: its own list, as this connection got it
            self.changed.set()
        self.session_id = session_id
        self.stats.sessions += 1
        self.stream_opened()
        self._resyncs.cancel_all()
        for sync in self._roster.syncs.values():
            sync.entry.session_id = session_id
            self._handle(sync, sync.reset())

    def _new_session(self, sync: InstrumentSync, session_id: str) -> None:
        entry = sync.entry
        if entry.session_id is not None:
            log.info("%s: new feed session %s (was %s)", sync.instrument_id, session_id, entry.session_id)
        entry.session_id = session_id
        self.stats.sessions += 1
        self._resyncs.cancel(sync.instrument_id)
        self._handle(sync, sync.reset(_joining(sync)))

    # ------------------------------------------------------------------ per-instrument results
    def _handle(self, sync: InstrumentSync, step: Step) -> None:
        stats = self.stats
        stats.messages += step.applied
        stats.duplicates += step.duplicates
        if step.fault is not None:
            self._count_fault(sync, step.fault)
        if step.resynced:
            stats.resyncs += 1
            held = self._throttle.allow((sync.instrument_id, "resynced"))
            if held is not None:
                log.info(
                    "%s resynchronised at sequence %s%s",
                    sync.instrument_id,
                    sync.entry.book.sequence,
                    held.suffix("resyncs"),
                )
        if step.request_snapshot:
            self._resyncs.start(sync.instrument_id)
        elif sync.state is not SyncState.RESYNCING:
            self._resyncs.cancel(sync.instrument_id)
        if step.notifications:
            stale = sync.entry.stale
            if stale == self._live.is_set():
                self._update_live(stale)
            for trades in step.notifications:
                self._notify(sync.instrument_id, trades)

    def _notify(self, instrument_id: str, trades: Sequence[Trade]) -> None:
        for listener in self._listeners:
            try:
                listener(instrument_id, trades)
            except Exception:
                log.exception("book listener %r failed on %s", listener, instrument_id)

    def _count_fault(self, sync: InstrumentSync, fault: BookError) -> None:
        self.stats.count_fault(fault, sync.instrument_id)
        held = self._throttle.allow((sync.instrument_id, "fault"))
        if held is None:
            return
        log.warning(
            "%s: %s (book at sequence %s); marked stale, resynchronising from a snapshot%s",
            sync.instrument_id,
            fault,
            sync.entry.book.sequence,
            held.suffix("faults"),
        )

    # ------------------------------------------------------------------ resynchronisation results
    def _on_snapshot(self, instrument_id: str, snapshot: pb.BookMessage) -> None:
        sync = self._roster.syncs.get(instrument_id)
        if sync is not None:
            self._handle(sync, sync.on_snapshot(snapshot))

    def _on_resync_failure(self, instrument_id: str, error: Exception) -> None:
        """A bug in a resync: logged once; the instrument starts over from its next stream message."""
        self.stats.unexpected_errors += 1
        text = f"unexpected error resynchronising {instrument_id}: {type(error).__name__}: {error}"
        if self._reconnects.first_report((type(error).__name__, str(error))):
            log.error("%s", text, exc_info=error)
        else:
            log.info("%s", text)
        sync = self._roster.syncs.get(instrument_id)
        if sync is not None:
            self._handle(sync, sync.reset(f"{text}; resynchronising"))

    # ------------------------------------------------------------------ live flag
    def _update_live(self, stale: bool) -> None:
        if stale:
            self._live.clear()
        elif all(not entry.stale for entry in self.books.values()):
            self._live.set()


def _joining(sync: InstrumentSync) -> str:
    """The stale reason while joining a stream that opens without snapshots: a book still waiting for its first
    snapshot keeps saying so (no listener call for a change of words only)."""
    return WAITING_FOR_SNAPSHOT if sync.entry.stale_reason == WAITING_FOR_SNAPSHOT else JOINING
