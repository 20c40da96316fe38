"""Per-instrument synchronisation of a consumer's book with the feed: a pure state machine, no I/O.

An :class:`InstrumentSync` takes the instrument's stream messages (``on_stream``) and the answers to its
own snapshot requests (``on_snapshot``) and tells its caller what happened in a :class:`Step`: which
messages were applied (one listener call each), whether the stale flag flipped, which fault was detected,
and whether a fresh snapshot must be requested. The caller (feed_server.client.keeper, over a transport) does the I/O.

States::

    WAITING    no book yet (new connection or new session): a snapshot on the stream makes it LIVE;
               anything else means the snapshot was lost, so a resync is requested (a transport whose stream
               opens without snapshots, NATS, calls ``request_resync`` on the first message instead)
    LIVE       messages are applied in sequence; duplicates (sequence <= the book's) are ignored;
               a gap, checksum mismatch, crossed result or malformed message -> RESYNCING
    RESYNCING  the book is stale and unchanged; stream messages are buffered; the requested snapshot
               (sequence S) is applied, buffered messages <= S dropped and the rest applied in order;
               a gap left over means another resync

A snapshot on the stream (INITIAL, or RESYNC when the server dropped a slow consumer's backlog) is
always applied as a fresh start.

A LIVE book is also stale while the messages say its source cannot vouch for it (``source_stale``, a live
exchange disconnected or resynchronising): the sequence and checksums are still verified, the book is the last
one the source verified, and the reason is the source's. A stale book says why in
``InstrumentBook.stale_reason``: the fault that made it stale ("sequence gap: expected 5, received 7;
resynchronising"), "waiting for the first snapshot", the source's reason, or what its caller passed to ``reset``
(a lost connection). Every fault a book refuses is handled alike, a ``DigestMismatch`` (a deep level wrong) as
a ``ChecksumMismatch``.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat

from feed_server.protocol.book import Trade
from feed_server.protocol.core import BookModel
from feed_server.protocol.errors import BookError, InvalidMessage, SequenceGap, SnapshotMissing
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.wire import apply_body, apply_message

__all__ = [
    "MAX_BUFFERED",
    "SOURCE_STALE",
    "TRADES_KEPT",
    "WAITING_FOR_SNAPSHOT",
    "InstrumentBook",
    "InstrumentSync",
    "Step",
    "SyncState",
    "fault_text",
]

TRADES_KEPT = 100
MAX_BUFFERED = 10_000  # stream messages kept while a resync is under way; the oldest go first
WAITING_FOR_SNAPSHOT = "waiting for the first snapshot"
SOURCE_STALE = "the feed's source is stale"  # the start of a LIVE book's stale reason while its source is


def _trades_deque() -> deque[tuple[int, Trade]]:
    return deque(maxlen=TRADES_KEPT)


@dataclass(eq=False)
class InstrumentBook:
    """One instrument as a subscriber holds it. Read it; only the subscriber writes it.

    ``stale``: the levels are not verified to be the feed's (they are the last verified ones, or none);
    ``stale_reason``: why, in a few words for a person (None while live). ``version`` goes up with every change
    (every applied message, including heartbeats, and every change of the stale flag or reason);
    ``levels_version`` only when what a book view shows changes: the levels (a snapshot, an update that changes
    a level), the stale flag or the stale reason; not with a heartbeat or an update without a level change.
    """

    spec: InstrumentSpec
    book: BookModel
    stale: bool = True
    last_event_time_ns: int = 0
    last_trade: Trade | None = None
    trades: deque[tuple[int, Trade]] = field(default_factory=_trades_deque)  # (event_time_ns, trade), newest last
    messages_applied: int = 0
    version: int = 0
    stale_reason: str | None = None
    levels_version: int = 0
    session_id: str | None = None  # the feed session of the instrument's stream (set by the subscriber)


class SyncState(enum.Enum):
    WAITING = "waiting"
    LIVE = "live"
    RESYNCING = "resyncing"


_NO_TRADES: tuple[Trade, ...] = ()
_LIVE = SyncState.LIVE  # a module global: one lookup per message, not a global and a class attribute


@dataclass(slots=True)
class Step:
    """What one input did. ``notifications`` holds one entry per listener call, in order: the trades of an
    applied message, or no trades for a stale flip."""

    notifications: list[Sequence[Trade]] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    fault: BookError | None = None
    request_snapshot: bool = False  # the caller must (re)start a GetSnapshot for this instrument
    resynced: bool = False  # a resync finished and the book is whole again


class InstrumentSync:
    """Keeps one :class:`InstrumentBook` in step with its stream. See the module docstring."""

    __slots__ = ("_base", "_buffer", "_joining", "entry", "state")

    def __init__(self, entry: InstrumentBook) -> None:
        self.entry = entry
        if entry.stale and entry.stale_reason is None:
            entry.stale_reason = WAITING_FOR_SNAPSHOT
        self.state = SyncState.WAITING
        self._base = False  # the book holds a verified state of the current stream's session
        self._joining = False  # RESYNCING to join a stream (request_resync), not to repair a fault
        self._buffer: deque[pb.BookMessage] = deque(maxlen=MAX_BUFFERED)

    @property
    def instrument_id(self) -> str:
        return self.entry.spec.instrument_id

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # ------------------------------------------------------------------ inputs
    def reset(self, reason: str = WAITING_FOR_SNAPSHOT) -> Step:
        """The connection was lost or a new stream began: stale (because of ``reason``) until the next snapshot
        on a stream. Called again while stale, it only updates the reason.

        The book keeps its last content (marked stale) until then."""
        step = Step()
        self.state = SyncState.WAITING
        self._base = False
        self._buffer.clear()
        self._set_stale(True, step, reason)
        return step

    def request_resync(self, reason: str) -> Step:
        """The stream gives no snapshot here (a transport whose stream opens without one, NATS): stale (because of
        ``reason``), stream messages buffered from now on, and a snapshot requested. Not a fault of the stream."""
        step = Step(request_snapshot=True)
        self.state = SyncState.RESYNCING
        self._joining = True
        self._buffer.clear()
        self._set_stale(True, step, reason)
        return step

    def on_unreadable(self, fault: InvalidMessage) -> Step:
        """A message of this instrument that the transport could not even read (it does not decode, or carries
        another instrument): a fault, repaired by a snapshot like a gap."""
        step = Step()
        self._fault(fault, step)
        return step

    def on_live_message(self, message: pb.BookMessage) -> Sequence[Trade] | None:
        """The common case, fast: apply the next update or heartbeat of a LIVE instrument.

        Returns the message's trades when it was applied (one listener call is due, nothing else changed), or
        None when it needs :meth:`on_stream`: the instrument is not LIVE, the message is a snapshot, a
        duplicate or refused by the book (which is then left as it was, for ``on_stream`` to judge).
        """
        if self.state is not _LIVE or message.source_stale or self.entry.stale:
            return None  # (a LIVE book is stale only while its source is: on_stream follows the source's state)
        body = message.WhichOneof("body")
        if body == "snapshot":
            return None
        try:
            trades, changed = apply_body(self.entry.book, message, body)
        except BookError:
            return None
        self._record(message, trades, changed)
        return trades

    def on_stream(self, message: pb.BookMessage) -> Step:
        """One message of this instrument from the Subscribe stream."""
        step = Step()
        state = self.state
        book_seq = self.entry.book.sequence
        body = message.WhichOneof("body")
        if body == "snapshot":
            if self._base and book_seq is not None and message.sequence <= book_seq:
                step.duplicates += 1  # an old snapshot again: never go back in time
            else:
                self._apply_snapshot(message, step)
            return step
        if state is SyncState.LIVE:
            if book_seq is not None and message.sequence <= book_seq:
                step.duplicates += 1
                return step
            try:
                trades, changed = apply_body(self.entry.book, message, body)
            except BookError as exc:
                self._fault(exc, step)
                if isinstance(exc, SequenceGap):
                    self._buffer.append(message)  # the message itself may be fine: keep it for after the snapshot
                return step
            self._record(message, trades, changed)
            step.applied += 1
            step.notifications.append(trades)
            self._follow_source(message, step)
            return step
        if state is SyncState.WAITING:
            self._fault(SnapshotMissing(self.instrument_id, message.sequence, "message before any snapshot"), step)
        self._buffer.append(message)
        return step

    def on_snapshot(self, message: pb.BookMessage) -> Step:
        """The answer to this instrument's GetSnapshot request."""
        step = Step()
        if self.state is SyncState.RESYNCING:
            self._apply_snapshot(message, step)
        return step  # otherwise a snapshot on the stream got there first

    # ------------------------------------------------------------------ internals
    def _apply_snapshot(self, message: pb.BookMessage, step: Step) -> None:
        """Apply a snapshot at sequence S, then the buffered messages after S, then go live.

        A snapshot older than the book's own verified state is not applied (never go back in time): the
        buffered messages are replayed from the book as it is."""
        book = self.entry.book
        if self._base and book.sequence is not None and message.sequence <= book.sequence:
            base = book.sequence
        else:
            try:
                apply_message(book, message)
            except BookError as exc:
                self._fault(exc, step)
                return
            self._base = True
            base = message.sequence
            self._record(message, _NO_TRADES, True)
            step.applied += 1
            step.notifications.append(_NO_TRADES)
        pending = sorted(
            (m for m in self._buffer if m.sequence > base and not m.HasField("snapshot")),
            key=lambda m: m.sequence,
        )
        self._buffer.clear()
        last = message
        for i, buffered in enumerate(pending):
            assert book.sequence is not None
            if buffered.sequence <= book.sequence:
                step.duplicates += 1
                continue
            try:
                trades, changed = apply_body(book, buffered, buffered.WhichOneof("body"))
            except BookError as exc:
                self._fault(exc, step)
                if isinstance(exc, SequenceGap):
                    self._buffer.extend(pending[i:])
                return
            self._record(buffered, trades, changed)
            step.applied += 1
            step.notifications.append(trades)
            last = buffered
        if self.state is SyncState.RESYNCING and not self._joining:
            step.resynced = True
        self._joining = False
        self.state = SyncState.LIVE
        self._follow_source(last, step)

    def _follow_source(self, message: pb.BookMessage, step: Step) -> None:
        """A LIVE book is stale exactly while the last message applied says its source is (``source_stale``)."""
        if message.source_stale:
            self._set_stale(True, step, f"{SOURCE_STALE}: {message.source_stale_reason or 'not whole'}")
        else:
            self._set_stale(False, step)

    def _record(self, message: pb.BookMessage, trades: Sequence[Trade], levels_changed: bool) -> None:
        entry = self.entry
        entry.last_event_time_ns = t = message.event_time_ns
        entry.messages_applied += 1
        entry.version += 1
        if levels_changed:
            entry.levels_version += 1
        if trades:
            entry.trades.extend(zip(repeat(t), trades))  # (event_time_ns, trade) pairs
            entry.last_trade = trades[-1]

    def _fault(self, exc: BookError, step: Step) -> None:
        step.fault = exc
        step.request_snapshot = True
        self.state = SyncState.RESYNCING
        self._joining = False
        self._set_stale(True, step, f"{fault_text(exc)}; resynchronising")

    def _set_stale(self, stale: bool, step: Step, reason: str | None = None) -> None:
        entry = self.entry
        if not stale:
            reason = None
        if entry.stale != stale or entry.stale_reason != reason:
            entry.stale = stale
            entry.stale_reason = reason
            entry.version += 1
            entry.levels_version += 1
            step.notifications.append(_NO_TRADES)


def fault_text(exc: BookError) -> str:
    """A book fault in a few words, without the instrument and sequence prefix (``"sequence gap: expected 5,
    received 7"``)."""
    return str(exc).removeprefix(f"{exc.instrument_id} seq {exc.sequence}: ")
