"""The feed subscriber: one asyncio task that keeps a set of books in step with a feed server.

Used by the CLI client and the dashboard::

    subscriber = FeedSubscriber("127.0.0.1:50051", ["BTC-USD"], depth=20)
    subscriber.add_listener(lambda instrument_id, trades: ...)
    task = asyncio.create_task(subscriber.run(), name="feed-subscriber")
    await subscriber.wait_live(timeout=5)
    entry = subscriber.books["BTC-USD"]   # InstrumentBook: .book, .stale, .trades, ...

``run()`` owns its gRPC channel. Per instrument the stream is verified (sequence, crossing, checksum) by
feed_server.client.sync; a broken instrument is marked stale and resynchronised alone with GetSnapshot while the
others keep flowing. A dead connection (error, end of stream, or no message for ``heartbeat_timeout``
seconds) marks every book stale, and the subscriber reconnects with exponential backoff and jitter, or,
with ``reconnect=False``, raises FeedUnavailable. This module is the boundary where gRPC errors become
feed_server.protocol.errors.
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

from feed_server.client.backoff import Backoff
from feed_server.client.rpc import CHANNEL_OPTIONS, fetch_instruments, translate_rpc_error
from feed_server.client.sync import InstrumentBook, InstrumentSync, Step, SyncState
from feed_server.protocol.book import MAX_DEPTH, OrderBook, Trade
from feed_server.protocol.errors import (
    BookError,
    ChecksumMismatch,
    CrossedBook,
    FeedUnavailable,
    SequenceGap,
    SnapshotMissing,
    UnknownInstrument,
)
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.pb import market_data_pb2_grpc

__all__ = [
    "BookListener",
    "ConnectionState",
    "FeedSubscriber",
    "InstrumentBook",
    "SubscriberStats",
]

log = logging.getLogger(__name__)

BookListener = Callable[[str, Sequence[Trade]], None]
"""Called as ``listener(instrument_id, trades)`` after every applied message and every stale flip."""

SNAPSHOT_TIMEOUT = 5.0
YIELD_EVERY = 500  # messages applied between two yields to the event loop when a stream item is large


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
    crossed: int = 0
    invalid: int = 0  # malformed messages
    resyncs: int = 0  # instruments made whole again by a snapshot after a fault
    reconnects: int = 0  # connection attempts after the first
    sessions: int = 0  # streams opened (a restarted server or a reconnect each add one)
    watchdog_timeouts: int = 0  # connections given up because nothing arrived for heartbeat_timeout


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
        seed: int | None = None,
    ) -> None:
        if not 1 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be between 1 and {MAX_DEPTH}, got {depth}")
        self.address = address
        self.instrument_ids: tuple[str, ...] = tuple(instrument_ids)
        self.depth = depth
        self.reconnect = reconnect
        self.heartbeat_timeout = heartbeat_timeout
        self.state = ConnectionState.CONNECTING
        self.session_id: str | None = None
        self.instruments: dict[str, InstrumentSpec] = {}
        self.books: dict[str, InstrumentBook] = {}
        self.stats = SubscriberStats()
        self._backoff = Backoff(backoff_initial, backoff_max, random.Random(seed))
        self._listeners: list[BookListener] = []
        self._syncs: dict[str, InstrumentSync] = {}
        self._resync_tasks: dict[str, asyncio.Task[None]] = {}
        self._stub: market_data_pb2_grpc.MarketDataStub | None = None
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

        Raises UnknownInstrument / BadRequest when the server refuses the request, FeedUnavailable on a lost
        connection when ``reconnect`` is False, and FeedError for any other refusal.
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
                try:
                    await self._connect_once()
                    error = FeedUnavailable(f"stream from {self.address} ended")
                except FeedUnavailable as exc:
                    error = exc
                reason = str(error)
                self._connection_lost()
                if not self.reconnect:
                    raise error
                if self.session_id is not None:
                    self.state = ConnectionState.RECONNECTING
                delay = self._backoff.delay()
                # One warning per outage; the further attempts of the same outage are logged at INFO.
                level = logging.WARNING if self._backoff.attempts == 1 else logging.INFO
                log.log(level, "%s; reconnecting in %.2f s", reason, delay)
                await asyncio.sleep(delay)
        except BaseException as exc:
            self._error = exc if isinstance(exc, Exception) else None
            raise
        finally:
            self._cancel_resyncs()
            self._mark_all_stale()
            self.state = ConnectionState.STOPPED
            self._running = False
            self._stopped.set()

    # ------------------------------------------------------------------ connection
    async def _connect_once(self) -> None:
        """One connection: list instruments, subscribe, apply messages until the stream ends or breaks."""
        async with grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS) as channel:
            stub = market_data_pb2_grpc.MarketDataStub(channel)
            self._stub = stub
            try:
                specs = await fetch_instruments(stub, self.address, rpc_timeout=max(self.heartbeat_timeout, 1.0))
                self._set_instruments(specs)
                request = pb.SubscribeRequest(instrument_ids=list(self.instrument_ids), depth=self.depth)
                call = stub.Subscribe(request)
                try:
                    await self._read_stream(call)
                except grpc.aio.AioRpcError as exc:
                    raise translate_rpc_error(exc, self.address, "Subscribe") from exc
                finally:
                    call.cancel()
            finally:
                self._stub = None
                self._cancel_resyncs()

    def _set_instruments(self, specs: Sequence[InstrumentSpec]) -> None:
        self.instruments = {spec.instrument_id: spec for spec in specs}
        wanted = self.instrument_ids or tuple(self.instruments)
        if not self.instrument_ids:  # subscribed to everything: forget instruments a restarted feed dropped
            for gone in [iid for iid in self.books if iid not in self.instruments]:
                del self.books[gone]
                del self._syncs[gone]
        for instrument_id in wanted:
            spec = self.instruments.get(instrument_id)
            if spec is None:
                raise UnknownInstrument(f"unknown instrument id {instrument_id!r}")
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
                async for response in call:
                    # (No re-arming here: handling a response is synchronous, the watchdog cannot fire during it.)
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
        self.session_id = session_id
        self.stats.sessions += 1
        self.state = ConnectionState.LIVE
        self._backoff.reset()
        self._cancel_resyncs()
        for sync in self._syncs.values():
            if sync.state is not SyncState.WAITING:
                self._handle(sync, sync.reset())

    def _connection_lost(self) -> None:
        self._cancel_resyncs()
        self._mark_all_stale()

    def _mark_all_stale(self) -> None:
        for sync in self._syncs.values():
            self._handle(sync, sync.reset())

    # ------------------------------------------------------------------ per-instrument results
    def _handle(self, sync: InstrumentSync, step: Step) -> None:
        stats = self.stats
        stats.messages += step.applied
        stats.duplicates += step.duplicates
        if step.fault is not None:
            self._count_fault(sync, step.fault)
        if step.resynced:
            stats.resyncs += 1
            log.info("%s resynchronised at sequence %s", sync.instrument_id, sync.entry.book.sequence)
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
        elif isinstance(fault, CrossedBook):
            stats.crossed += 1
        elif isinstance(fault, SnapshotMissing):
            stats.gaps += 1
        else:
            stats.invalid += 1
        log.warning(
            "%s: %s (book at sequence %s); marked stale, resynchronising from a snapshot",
            sync.instrument_id,
            fault,
            sync.entry.book.sequence,
        )

    # ------------------------------------------------------------------ resynchronisation
    def _start_resync(self, instrument_id: str) -> None:
        if instrument_id in self._resync_tasks or self._stub is None:
            return
        task = asyncio.create_task(self._resync(instrument_id, self._stub), name=f"resync-{instrument_id}")
        self._resync_tasks[instrument_id] = task

    async def _resync(self, instrument_id: str, stub: market_data_pb2_grpc.MarketDataStub) -> None:
        """Fetch a snapshot of one instrument and hand it to its sync (retrying while the stream lives)."""
        delay = 0.05
        request = pb.SnapshotRequest(instrument_id=instrument_id, depth=self.depth)
        while True:
            try:
                snapshot: pb.BookMessage = await stub.GetSnapshot(request, timeout=SNAPSHOT_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                error = translate_rpc_error(exc, self.address, f"GetSnapshot {instrument_id}")
                log.warning("%s: snapshot request failed: %s; retrying in %.2f s", instrument_id, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            break
        if self._resync_tasks.get(instrument_id) is asyncio.current_task():
            del self._resync_tasks[instrument_id]
        sync = self._syncs[instrument_id]
        self._handle(sync, sync.on_snapshot(snapshot))

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
