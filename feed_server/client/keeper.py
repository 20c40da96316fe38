"""The subscriber core: the books, their listeners and the life of a connection, whatever the transport.

:class:`Subscriber` holds the public surface of a subscriber (``books``, ``instruments``, ``source``, ``state``,
``problem``, ``stats``, listeners, ``wait_live``), drives each instrument's sans-I/O sync state machine
(feed_server.client.sync) and its snapshot requests (feed_server.client.resync), and runs the never-give-up
reconnect loop. It is handed a transport (feed_server.client.transport.Transport): the gRPC one
(feed_server.client.grpc_transport) or the NATS one (feed_server.client.nats_transport). The transport opens
one connection at a time and hands what it reads to the core's transport-facing methods (the BookPort, below
``run``); the core imports neither grpc nor nats, and the transports never touch its fields.

With ``reconnect=True`` (the default) ``run()`` never gives up until cancelled: any failure of a connection (a
FeedError of any kind, the end of the stream, ``heartbeat_timeout`` seconds of silence, a message that does not
decode, an unexpected exception while handling the stream) marks every book stale and it reconnects with
exponential backoff and jitter; a code that retrying cannot heal soon (feed_server.protocol.errors.Code.permanent)
is retried every ``backoff_max`` seconds. ``problem`` says in one line why the books are not live; each distinct
problem is logged once (a bug at ERROR with its traceback), its repeats at INFO. With ``reconnect=False`` the
first failure is raised (the CLI's first connection).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from enum import StrEnum

from google.protobuf.message import DecodeError

from feed_server.client.failures import describe_failure
from feed_server.client.resync import Resyncs
from feed_server.client.stats import SubscriberStats
from feed_server.client.sync import WAITING_FOR_SNAPSHOT, InstrumentBook, InstrumentSync, Step, SyncState
from feed_server.client.transport import Transport
from feed_server.pacing import Backoff, ReportOnce, Throttle
from feed_server.protocol.book import MAX_DEPTH, OrderBook, Trade
from feed_server.protocol.errors import BookError, Code, FeedError, FeedUnavailable, InvalidMessage, UnknownInstrument
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.pb import market_data_pb2 as pb

__all__ = ["JOINING", "BookListener", "ConnectionState", "Subscriber"]

log = logging.getLogger("feed_server.client.subscriber")  # the subscriber's log lines, as users grep them

BookListener = Callable[[str, Sequence[Trade]], None]
"""Called as ``listener(instrument_id, trades)`` after every applied message and every change of the stale flag
or of the stale reason."""

STABLE_AFTER = 1.0  # a stream live this long was a successful connection: the backoff and the reports start afresh
LOG_INTERVAL = 5.0  # seconds between two log lines of the same kind about one instrument
RESYNC_BACKOFF_INITIAL = 0.1
RESYNC_BACKOFF_MAX = 2.0
RESYNC_CLEAN_AFTER = 60.0  # seconds without a fault after which an instrument's next resync is immediate again
MAX_REPORTED = 100  # distinct problems remembered (logged once each) until a connection succeeds
RELIST_INTERVAL = 2.0  # at most one new instrument-list request this often (an unknown instrument was seen)
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
        self.instruments: dict[str, InstrumentSpec] = {}
        self.source = ""  # what the feed plays, as its last ListInstruments said ("replay of s.mdrec at 10x")
        self._listed: dict[str, InstrumentSpec] = {}  # the list as this connection's listing answered it
        self._depths: dict[str, int] = {}  # per instrument: the depth its stream's checksums are of
        self._last_seen: dict[str, float] = {}  # per instrument: when its last message arrived (loop time)
        self._unknown: set[str] = set()  # instruments seen on the stream that no listing named
        self._last_listing = 0.0  # loop time of the last listing taken
        self.books: dict[str, InstrumentBook] = {}
        self.stats = SubscriberStats()
        self._rng = random.Random(seed)
        self._backoff = Backoff(backoff_initial, backoff_max, self._rng)
        self._throttle = Throttle(log_interval)
        self._reported = ReportOnce(MAX_REPORTED)  # the problems logged at WARNING/ERROR since the last success
        self._live_since: float | None = None  # when the current stream's first response arrived
        self._listeners: list[BookListener] = []
        self._syncs: dict[str, InstrumentSync] = {}
        self._resyncs = Resyncs(
            self._book_depth,
            self.stats,
            self._throttle,
            (resync_backoff_initial, resync_backoff_max, RESYNC_CLEAN_AFTER, self._rng),
            on_snapshot=self._on_snapshot,
            on_failure=self._on_resync_failure,
            session=self._session_of,
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
        attempt = 0
        try:
            while True:
                if attempt:
                    self.stats.reconnects += 1
                attempt += 1
                error: Exception
                try:
                    await self._connect_once()
                    error = FeedUnavailable(f"stream from {self.address} ended")
                except FeedError as exc:
                    error = exc
                except Exception as exc:  # a bug or the unforeseen inside the stream handling: retried (logged once)
                    if not self.reconnect:
                        raise
                    self.stats.unexpected_errors += 1
                    error = exc
                delay = self._connection_failed(error)
                if not self.reconnect:
                    raise error
                await asyncio.sleep(delay)
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
        self._live_since = None
        self._resyncs.fetch = self.transport.fetch_snapshot
        try:
            await self.transport.stream(self)
        finally:
            self._resyncs.fetch = None
            self._resyncs.cancel_all()

    def _session_of(self, instrument_id: str) -> str | None:
        """The feed session ``instrument_id``'s stream is of (a snapshot of another session is never applied)."""
        entry = self.books.get(instrument_id)
        return entry.session_id if entry is not None else None

    def _book_depth(self, instrument_id: str) -> int:
        """The depth at which ``instrument_id``'s book is kept (the depth of its stream's checksums)."""
        return self._depths.get(instrument_id, self.depth)

    # ------------------------------------------------------------------ connection
    def _connection_failed(self, error: Exception) -> float:
        """A connection ended with ``error``: mark the books stale, say why (``problem``, the books' reasons, one
        log line per distinct problem), and return the delay before the next attempt."""
        loop = asyncio.get_running_loop()
        if self._live_since is not None and loop.time() - self._live_since >= STABLE_AFTER:
            self._backoff.reset()  # the connection had succeeded: this is a new outage
            self._reported.clear()
        self._live_since = None
        self.failure = error
        self.changed.set()
        failure = describe_failure(error, self.address, self._backoff.maximum)
        # The same request would be refused again for a while: retried at the slowest pace.
        delay = self._backoff.maximum if failure.permanent else self._backoff.delay()
        text, permanent, self.problem = failure.text, failure.permanent, failure.problem
        self._connection_lost(failure.book_reason)
        if self.state is ConnectionState.LIVE:
            self.state = ConnectionState.RECONNECTING
        if not self.reconnect:
            return 0.0  # raised by run(): its caller reports it
        if not self._reported.first((type(error).__name__, str(error))):
            log.info("%s; reconnecting in %.2f s", text, delay)
        elif not isinstance(error, FeedError):
            log.error("%s; the books are stale, reconnecting in %.2f s", text, delay, exc_info=error)
        elif permanent:
            log.warning("%s; the books are stale, retrying every %g s", text, delay)
        else:
            log.warning("%s; reconnecting in %.2f s", text, delay)
        return delay

    # ------------------------------------------------------------------ the transport's side (BookPort)
    def take_listing(self, specs: Sequence[InstrumentSpec], source: str, depths: dict[str, int]) -> None:
        """Take the feed's instrument list of this connection, what it plays, and the depth of each instrument's
        stream (its checksums' depth).

        Within one session of the feed its instruments cannot change, so a list that differs from the session's
        (a response damaged on the way: a listing carries no checksum) only adds what it names anew; the list
        replaces the known one (forgetting the instruments it lacks) only when the stream turns out to be a new
        session or before the first. Raises UnknownInstrument for a subscribed id the list lacks."""
        self.source = source
        for instrument_id, depth in depths.items():
            self._depths.setdefault(instrument_id, depth)
        listed = {spec.instrument_id: spec for spec in specs}
        self._listed = listed
        self._unknown.difference_update(listed)
        self._last_listing = asyncio.get_running_loop().time()
        if self.session_id is not None:
            listed = {**listed, **self.instruments}  # the session's own specs win over this listing
        self._take_instruments(listed)

    def stream_opened(self) -> None:
        """The connection streams: the subscriber is connected (its books go live as their messages come)."""
        self.state = ConnectionState.LIVE
        self.problem = None
        self._live_since = asyncio.get_running_loop().time()

    def stream_batch(self, session_id: str, messages: Sequence[pb.BookMessage]) -> None:
        """Messages of one stream of one feed session (every instrument's, in order; it opens with a snapshot of
        each). The first batch of a stream, or one of a new session, starts every book over on it."""
        if session_id != self.session_id or self.state is not ConnectionState.LIVE:
            self._new_stream(session_id)
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

    def instrument_message(self, instrument_id: str, session_id: str, data: bytes) -> None:
        """One message of one instrument's own stream (sessions per instrument; no snapshot opens it): a new
        session starts that book over, and a book that waits for its snapshot asks for one."""
        sync = self._syncs.get(instrument_id)
        if sync is None:
            if not self.instrument_ids:
                self._unknown.add(instrument_id)
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
        for instrument_id, sync in self._syncs.items():
            if sync.state is SyncState.WAITING:
                continue
            seen = self._last_seen.get(instrument_id)
            if seen is None or now - seen > timeout:
                self.stats.watchdog_timeouts += 1
                self._handle(sync, sync.reset(f"no message for {instrument_id} {where} for {timeout:g} s"))

    def wants_listing(self) -> bool:
        """Whether instruments no listing named were seen, and the last listing is old enough to ask again."""
        due = asyncio.get_running_loop().time() - self._last_listing >= RELIST_INTERVAL
        return bool(self._unknown) and due

    def _take_instruments(self, listed: dict[str, InstrumentSpec]) -> None:
        self.instruments = listed
        wanted = self.instrument_ids or tuple(self.instruments)
        if not self.instrument_ids:  # subscribed to everything: forget instruments a restarted feed dropped
            for gone in [iid for iid in self.books if iid not in self.instruments]:
                del self.books[gone]
                del self._syncs[gone]
                self._resyncs.forget(gone)
        for instrument_id in wanted:
            spec = self.instruments.get(instrument_id)
            if spec is None:
                raise UnknownInstrument(f"unknown instrument id {instrument_id!r}", Code.UNKNOWN_INSTRUMENT)
            entry = self.books.get(instrument_id)
            if entry is None:
                entry = InstrumentBook(spec, OrderBook(instrument_id, self._book_depth(instrument_id)))
                self.books[instrument_id] = entry
                self._syncs[instrument_id] = InstrumentSync(entry)
            else:
                entry.spec = spec
        self.changed.set()

    def _connection_lost(self, reason: str) -> None:
        self._resyncs.cancel_all()
        self._mark_all_stale(reason)

    def _mark_all_stale(self, reason: str) -> None:
        for sync in self._syncs.values():
            self._handle(sync, sync.reset(reason))

    def _new_stream(self, session_id: str) -> None:
        """The first response of a stream: every book waits for its snapshot on it."""
        if self.session_id is not None and session_id != self.session_id:
            log.info("feed at %s has a new session %s (was %s)", self.address, session_id, self.session_id)
            self._take_instruments(self._listed)  # a restarted feed: its own list, as this connection got it
        self.session_id = session_id
        self.stats.sessions += 1
        self.stream_opened()
        self._resyncs.cancel_all()
        for sync in self._syncs.values():
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
        sync = self._syncs.get(instrument_id)
        if sync is not None:
            self._handle(sync, sync.on_snapshot(snapshot))

    def _on_resync_failure(self, instrument_id: str, error: Exception) -> None:
        """A bug in a resync: logged once; the instrument starts over from its next stream message."""
        self.stats.unexpected_errors += 1
        text = f"unexpected error resynchronising {instrument_id}: {type(error).__name__}: {error}"
        if self._reported.first((type(error).__name__, str(error))):
            log.error("%s", text, exc_info=error)
        else:
            log.info("%s", text)
        sync = self._syncs.get(instrument_id)
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
