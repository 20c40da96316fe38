"""The feed subscriber: one asyncio task that keeps a set of books in step with a feed server.

Used by the CLI client and the dashboard::

    subscriber = FeedSubscriber("127.0.0.1:50051", ["BTC-USD"], depth=20)
    subscriber.add_listener(lambda instrument_id, trades: ...)
    task = asyncio.create_task(subscriber.run(), name="feed-subscriber")
    await subscriber.wait_live(timeout=5)
    entry = subscriber.books["BTC-USD"]   # InstrumentBook: .book, .stale, .stale_reason, .trades, ...

``run()`` owns its gRPC channel. Per instrument the stream is verified (sequence, crossing, checksum, book
digest) by feed_server.client.sync; a broken instrument is marked stale and resynchronised alone with
GetSnapshot while the others keep flowing. Repeated faults on one instrument space out its snapshot requests
(feed_server.client.backoff.ResyncPacer) and its log lines (one line with a count per interval).

With ``reconnect=True`` (the default) ``run()`` never gives up while it is not cancelled: any failure of a
connection (a gRPC status of any kind, the end of the stream, no message for ``heartbeat_timeout`` seconds, a
message that does not decode, an unexpected exception while handling the stream) marks every book stale and
it reconnects with exponential backoff and jitter. A status a retry cannot heal soon (NOT_FOUND,
UNIMPLEMENTED, ... see feed_server.client.rpc.PERMANENT_CODES) is retried every ``backoff_max`` seconds.
``problem`` says in one line why the books are not live; each distinct problem is logged once (an unexpected
exception at ERROR with its traceback, the others at WARNING), its repeats at INFO. With ``reconnect=False``
the first failure is raised as a FeedError (the CLI's first connection). This module and
feed_server.client.rpc are the boundary where gRPC errors become feed_server.protocol.errors.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import grpc
import grpc.aio

from feed_server.client.backoff import Backoff, ResyncPacer, Throttle
from feed_server.client.rpc import (
    CHANNEL_OPTIONS,
    FeedStub,
    decode,
    fetch_instruments,
    heals_by_retrying,
    translate_rpc_error,
)
from feed_server.client.sync import InstrumentBook, InstrumentSync, Step, SyncState
from feed_server.protocol.book import MAX_DEPTH, OrderBook, Trade
from feed_server.protocol.errors import (
    BookError,
    ChecksumMismatch,
    CrossedBook,
    DigestMismatch,
    FeedError,
    FeedUnavailable,
    SequenceGap,
    SnapshotMissing,
    UnknownInstrument,
)
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.pb import market_data_pb2 as pb

__all__ = [
    "BookListener",
    "ConnectionState",
    "FeedSubscriber",
    "InstrumentBook",
    "SubscriberStats",
]

log = logging.getLogger(__name__)

BookListener = Callable[[str, Sequence[Trade]], None]
"""Called as ``listener(instrument_id, trades)`` after every applied message and every change of the stale flag
or of the stale reason."""

SNAPSHOT_TIMEOUT = 5.0
YIELD_EVERY = 500  # messages applied between two yields to the event loop when a stream item is large
STABLE_AFTER = 1.0  # a stream live this long was a successful connection: the backoff and the reports start afresh
LOG_INTERVAL = 5.0  # seconds between two log lines of the same kind about one instrument
RESYNC_BACKOFF_INITIAL = 0.1
RESYNC_BACKOFF_MAX = 2.0
RESYNC_CLEAN_AFTER = 60.0  # seconds without a fault after which an instrument's next resync is immediate again
MAX_REPORTED = 100  # distinct problems remembered (logged once each) until a connection succeeds


class ConnectionState(StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"


@dataclass
class SubscriberStats:
    """Counters since the subscriber was created."""

    messages: int = 0  # messages applied to a book
    duplicates: int = 0  # messages ignored because their sequence was already applied
    gaps: int = 0  # sequence gaps detected (including updates seen before any snapshot)
    checksum_errors: int = 0
    digest_errors: int = 0  # the whole book did not match a message's book digest
    crossed: int = 0
    invalid: int = 0  # malformed messages
    resyncs: int = 0  # instruments made whole again by a snapshot after a fault
    snapshot_requests: int = 0  # GetSnapshot calls made
    foreign_snapshots: int = 0  # GetSnapshot answers from another session than the stream's, dropped
    reconnects: int = 0  # connection attempts after the first
    sessions: int = 0  # streams opened (a restarted server or a reconnect each add one)
    watchdog_timeouts: int = 0  # connections given up because nothing arrived for heartbeat_timeout
    unexpected_errors: int = 0  # connections ended by an unexpected exception (a bug) and retried


class FeedSubscriber:
    """Subscribes to instruments on a feed server and keeps their books. See the module docstring."""

    def __init__(
        self,
        address: str,
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
        self.address = address
        self.instrument_ids: tuple[str, ...] = tuple(instrument_ids)
        self.depth = depth
        self.reconnect = reconnect  # read at each failure: may be switched on while running (the CLI does)
        self.heartbeat_timeout = heartbeat_timeout
        self.state = ConnectionState.CONNECTING
        self.session_id: str | None = None
        self.problem: str | None = None
        """Why the books are not live, in one line for a person; None while connected and streaming."""
        self.instruments: dict[str, InstrumentSpec] = {}
        self._listed: dict[str, InstrumentSpec] = {}  # the list as this connection's ListInstruments answered it
        self.books: dict[str, InstrumentBook] = {}
        self.stats = SubscriberStats()
        self._rng = random.Random(seed)
        self._backoff = Backoff(backoff_initial, backoff_max, self._rng)
        self._resync_backoff = (resync_backoff_initial, resync_backoff_max)
        self._pacers: dict[str, ResyncPacer] = {}
        self._throttle = Throttle(log_interval)
        self._reported: set[tuple[str, str]] = set()  # the problems logged at WARNING/ERROR since the last success
        self._live_since: float | None = None  # when the current stream's first response arrived
        self._listeners: list[BookListener] = []
        self._syncs: dict[str, InstrumentSync] = {}
        self._resync_tasks: dict[str, asyncio.Task[None]] = {}
        self._stub: FeedStub | None = None
        self._live = asyncio.Event()
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
            self._cancel_resyncs()
            self._mark_all_stale("the subscriber stopped")
            self.state = ConnectionState.STOPPED
            self._running = False
            self._stopped.set()

    # ------------------------------------------------------------------ connection
    async def _connect_once(self) -> None:
        """One connection: list instruments, subscribe, apply messages until the stream ends or breaks."""
        self._live_since = None
        async with grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS) as channel:
            stub = FeedStub(channel)
            self._stub = stub
            try:
                specs = await fetch_instruments(stub, self.address, rpc_timeout=max(self.heartbeat_timeout, 1.0))
                self._set_instruments(specs)
                request = pb.SubscribeRequest(instrument_ids=list(self.instrument_ids), depth=self.depth)
                call = stub.subscribe(request)
                try:
                    await self._read_stream(call)
                except grpc.aio.AioRpcError as exc:
                    raise translate_rpc_error(exc, self.address, "Subscribe") from exc
                finally:
                    call.cancel()
            finally:
                self._stub = None
                self._cancel_resyncs()

    def _connection_failed(self, error: Exception) -> float:
        """A connection ended with ``error``: mark the books stale, say why (``problem``, the books' reasons, one
        log line per distinct problem), and return the delay before the next attempt."""
        loop = asyncio.get_running_loop()
        if self._live_since is not None and loop.time() - self._live_since >= STABLE_AFTER:
            self._backoff.reset()  # the connection had succeeded: this is a new outage
            self._reported.clear()
        self._live_since = None
        delay = self._backoff.delay()
        permanent = False
        if not isinstance(error, FeedError):  # a bug, most likely to happen again: its traceback once
            text = f"unexpected error reading the feed at {self.address}: {type(error).__name__}: {error}"
            self.problem = book_reason = f"{text}; reconnecting"
        elif heals_by_retrying(error):
            text = str(error)
            self.problem = f"{text}; reconnecting"
            book_reason = f"feed connection lost: {text}"
        else:  # the same request will be refused again for a while: retried at the slowest pace
            permanent = True
            delay = self._backoff.maximum
            text = str(error) if self.address in str(error) else f"feed at {self.address}: {error}"
            code = error.code.name if error.code is not None else "no status"
            text = text if code in text else f"{text} ({code})"
            self.problem = book_reason = f"{text}; retrying every {delay:g} s"
        self._connection_lost(book_reason)
        if self.session_id is not None:
            self.state = ConnectionState.RECONNECTING
        if not self.reconnect:
            return 0.0  # raised by run(): its caller reports it
        key = (type(error).__name__, str(error))
        if key in self._reported:
            log.info("%s; reconnecting in %.2f s", text, delay)
            return delay
        if len(self._reported) >= MAX_REPORTED:
            self._reported.clear()
        self._reported.add(key)
        if not isinstance(error, FeedError):
            log.error("%s; the books are stale, reconnecting in %.2f s", text, delay, exc_info=error)
        elif permanent:
            log.warning("%s; the books are stale, retrying every %g s", text, delay)
        else:
            log.warning("%s; reconnecting in %.2f s", text, delay)
        return delay

    def _set_instruments(self, specs: Sequence[InstrumentSpec]) -> None:
        """Take the feed's instrument list of this connection.

        Within one session of the feed its instruments cannot change, so a list that differs from the session's
        (a response damaged on the way: ListInstruments carries no checksum) only adds what it names anew; the
        list replaces the known one (forgetting the instruments it lacks) only when the stream turns out to be a
        new session (``_new_stream``) or before the first."""
        listed = {spec.instrument_id: spec for spec in specs}
        self._listed = listed
        if self.session_id is not None:
            listed = {**listed, **self.instruments}  # the session's own specs win over this listing
        self._take_instruments(listed)

    def _take_instruments(self, listed: dict[str, InstrumentSpec]) -> None:
        self.instruments = listed
        wanted = self.instrument_ids or tuple(self.instruments)
        if not self.instrument_ids:  # subscribed to everything: forget instruments a restarted feed dropped
            for gone in [iid for iid in self.books if iid not in self.instruments]:
                del self.books[gone]
                del self._syncs[gone]
                self._pacers.pop(gone, None)
        for instrument_id in wanted:
            spec = self.instruments.get(instrument_id)
            if spec is None:
                raise UnknownInstrument(f"unknown instrument id {instrument_id!r}", grpc.StatusCode.NOT_FOUND)
            entry = self.books.get(instrument_id)
            if entry is None:
                entry = InstrumentBook(spec, OrderBook(instrument_id, self.depth))
                self.books[instrument_id] = entry
                self._syncs[instrument_id] = InstrumentSync(entry)
            else:
                entry.spec = spec

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
        listeners = self._listeners
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
            for listener in listeners:
                try:
                    listener(instrument_id, trades)
                except Exception:
                    log.exception("book listener %r failed on %s", listener, instrument_id)

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
        self._cancel_resyncs()
        for sync in self._syncs.values():
            self._handle(sync, sync.reset())

    def _connection_lost(self, reason: str) -> None:
        self._cancel_resyncs()
        self._mark_all_stale(reason)

    def _mark_all_stale(self, reason: str) -> None:
        for sync in self._syncs.values():
            self._handle(sync, sync.reset(reason))

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
            self._start_resync(sync.instrument_id)
        elif sync.state is not SyncState.RESYNCING:
            task = self._resync_tasks.pop(sync.instrument_id, None)
            if task is not None:
                task.cancel()
        if step.notifications:
            stale = sync.entry.stale
            if stale == self._live.is_set():
                self._update_live(stale)
            instrument_id = sync.instrument_id
            for trades in step.notifications:
                for listener in self._listeners:
                    try:
                        listener(instrument_id, trades)
                    except Exception:
                        log.exception("book listener %r failed on %s", listener, instrument_id)

    def _count_fault(self, sync: InstrumentSync, fault: BookError) -> None:
        stats = self.stats
        if isinstance(fault, SequenceGap):
            stats.gaps += 1
        elif isinstance(fault, ChecksumMismatch):
            stats.checksum_errors += 1
        elif isinstance(fault, DigestMismatch):
            stats.digest_errors += 1
        elif isinstance(fault, CrossedBook):
            stats.crossed += 1
        elif isinstance(fault, SnapshotMissing):
            stats.gaps += 1
        else:
            stats.invalid += 1
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

    # ------------------------------------------------------------------ resynchronisation
    def _start_resync(self, instrument_id: str) -> None:
        if instrument_id in self._resync_tasks or self._stub is None:
            return
        pacer = self._pacers.get(instrument_id)
        if pacer is None:
            initial, maximum = self._resync_backoff
            pacer = self._pacers[instrument_id] = ResyncPacer(initial, maximum, RESYNC_CLEAN_AFTER, self._rng)
        task = asyncio.create_task(
            self._resync(instrument_id, self._stub, pacer, pacer.on_fault()), name=f"resync-{instrument_id}"
        )
        self._resync_tasks[instrument_id] = task

    async def _resync(self, instrument_id: str, stub: FeedStub, pacer: ResyncPacer, delay: float) -> None:
        """Fetch a snapshot of one instrument (after ``delay``) and hand it to its sync. Cancelled when the stream
        ends or the instrument no longer needs it."""
        try:
            snapshot = await self._fetch_snapshot(instrument_id, stub, pacer, delay)
            if self._resync_tasks.get(instrument_id) is asyncio.current_task():
                del self._resync_tasks[instrument_id]
            sync = self._syncs.get(instrument_id)
            if sync is not None:
                self._handle(sync, sync.on_snapshot(snapshot))
        except Exception as exc:  # a bug: logged once; the instrument starts over from its next stream message
            if self._resync_tasks.get(instrument_id) is asyncio.current_task():
                del self._resync_tasks[instrument_id]
            self.stats.unexpected_errors += 1
            text = f"unexpected error resynchronising {instrument_id}: {type(exc).__name__}: {exc}"
            key = (type(exc).__name__, str(exc))
            if key in self._reported:
                log.info("%s", text)
            else:
                self._reported.add(key)
                log.error("%s", text, exc_info=exc)
            sync = self._syncs.get(instrument_id)
            if sync is not None:
                self._handle(sync, sync.reset(f"{text}; resynchronising"))

    async def _fetch_snapshot(
        self, instrument_id: str, stub: FeedStub, pacer: ResyncPacer, delay: float
    ) -> pb.BookMessage:
        """A snapshot of one instrument from the stream's session, retried (paced) until there is one."""
        request = pb.SnapshotRequest(instrument_id=instrument_id, depth=self.depth)
        what = f"GetSnapshot {instrument_id}"
        while True:
            if delay > 0:
                await asyncio.sleep(delay)
            self.stats.snapshot_requests += 1
            try:
                try:
                    raw: bytes = await stub.get_snapshot(request, timeout=SNAPSHOT_TIMEOUT)
                except grpc.aio.AioRpcError as exc:
                    raise translate_rpc_error(exc, self.address, what) from exc
                snapshot = decode(pb.BookMessage, raw, self.address, what)
            except FeedError as error:
                delay = pacer.retry_delay()
                self._log_resync_problem(instrument_id, "snapshot", f"snapshot request failed: {error}", delay)
                continue
            if snapshot.session_id and snapshot.session_id != self.session_id:
                # The feed restarted since this stream began: never mix two sessions' books. The new stream's
                # own snapshots will come (or this request, retried, gets one of the stream's session).
                self.stats.foreign_snapshots += 1
                delay = pacer.retry_delay()
                self._log_resync_problem(
                    instrument_id,
                    "session",
                    f"snapshot of session {snapshot.session_id}, the stream is of session {self.session_id}: dropped",
                    delay,
                    logging.INFO,
                )
                continue
            return snapshot

    def _log_resync_problem(
        self, instrument_id: str, kind: str, text: str, delay: float, level: int = logging.WARNING
    ) -> None:
        held = self._throttle.allow((instrument_id, kind))
        if held is not None:
            log.log(level, "%s: %s; retrying in %.2f s%s", instrument_id, text, delay, held.suffix("times"))

    def _cancel_resyncs(self) -> None:
        for task in self._resync_tasks.values():
            task.cancel()
        self._resync_tasks.clear()

    # ------------------------------------------------------------------ live flag
    def _update_live(self, stale: bool) -> None:
        if stale:
            self._live.clear()
        elif all(not entry.stale for entry in self.books.values()):
            self._live.set()
