"""A recorded session played back through the same engine and fan-out as the simulation (``--replay FILE``).

:class:`ReplaySource` is an :class:`~feed_server.server.sources.EventSource`. It reads a recording
(feed_server.record.format) and keeps, per instrument, the book at the recorded depth, rebuilt by applying the
recorded messages with the consumer's own checks (sequence, checksum, digest: feed_server.protocol.wire), so it
never serves a book the recording does not prove. Each recorded message is published as one message with its
recorded sequence; subscribers at the recorded depth get the recorded message itself (its body, sequence and
checksum as recorded; only ``event_time_ns`` is moved), subscribers at smaller depths get messages derived from
its changes by the fan-out's depth views, as from the simulation. A recorded snapshot (the recorder was resynced,
or the recorded feed restarted) replaces the book and gives every subscriber of that instrument a snapshot.

Time. The replay starts when its first subscriber comes (so a consumer started with it sees the whole
recording; later subscribers join it where it is). Messages are due in the order recorded, at their recorded
``event_time_ns`` (never earlier than the one before), divided by ``speed``, counted from that start:
``--speed 1`` takes the recorded time, ``--speed 10`` a tenth of it. ``speed=None`` (``--speed max``) is not
paced: the engine plays it as fast as the subscribers take it, and waits while nobody is subscribed. A message's
``event_time_ns`` is the wall time it was due (so the replay's first message is "now"), or the recorded one with
``original_times``.

Sessions. The first pass starts with the recording's opening snapshots already applied (a subscriber's initial
snapshot is then the recorded one). Where the recording's own session changes (its feed restarted), and at each
new pass of ``loop``, the fan-out starts a new session on the open streams (Fanout.new_session): what they
hold of the old one is still delivered, then the new session starts with a snapshot of each instrument.
Without ``loop`` the replay stops at the end of the recording and keeps serving its last books.

A recording whose messages do not verify (a gap, a checksum that does not match) is not a recording this code
wrote whole: the replay stops with BadRecording naming the file, the instrument and the sequence (the engine
then fails, and says so to every consumer).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from time import monotonic_ns

from feed_server.protocol.book import MAX_DEPTH, LevelChange, OrderBook, Side, Trade
from feed_server.protocol.errors import BookError
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.wire import apply_body, instrument_from_pb
from feed_server.record.format import BadRecording, RecordingReader
from feed_server.server.fanout import Fanout
from feed_server.server.simulator import Event
from feed_server.server.sources import END_NS

__all__ = ["ReplayBook", "ReplaySource", "speed_text"]

logger = logging.getLogger(__name__)

_SIDES = {pb.SIDE_BID: Side.BID, pb.SIDE_ASK: Side.ASK}
_Item = tuple[str, pb.BookMessage]  # (the recorded session id, one recorded message)


def speed_text(speed: float | None) -> str:
    """``"10x"``, ``"1x"``, ``"0.5x"``, or ``"max"`` for an unpaced replay."""
    return "max" if speed is None else f"{speed:g}x"


class ReplayBook:
    """One instrument of a replay, as the fan-out reads it (a BookSource)."""

    __slots__ = ("book", "instrument_id", "messages", "time_ns")

    def __init__(self, instrument_id: str, depth: int) -> None:
        self.instrument_id = instrument_id
        self.book = OrderBook(instrument_id, depth)
        self.time_ns = 0  # engine time of its last message (with original times: its recorded event time)
        self.messages = 0  # recorded messages played


class ReplaySource:
    """A recording as an event source (see the module docstring). Raises BadRecording for a file that is not a
    recording, has another version, or holds no message."""

    def __init__(
        self, path: Path, *, speed: float | None = 1.0, loop: bool = False, original_times: bool = False
    ) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.path = Path(path)
        self.speed = speed
        self.loop = loop
        self.original_times = original_times
        self._reader = RecordingReader(self.path)
        header = self._reader.header
        if not 1 <= header.depth <= MAX_DEPTH:
            raise BadRecording(f"{self.path}: its header gives depth {header.depth}, not within 1..{MAX_DEPTH}")
        self.max_depth = header.depth
        self.depth_note = f"{self.path.name} was recorded at depth {header.depth}"
        try:
            specs = [instrument_from_pb(instrument) for instrument in header.instruments]
        except ValueError as exc:
            raise BadRecording(f"{self.path}: its header lists a bad instrument ({exc})") from None
        if not specs:
            raise BadRecording(f"{self.path}: its header lists no instrument")
        self.specs: dict[str, InstrumentSpec] = {spec.instrument_id: spec for spec in specs}
        self.books: dict[str, ReplayBook] = {iid: ReplayBook(iid, header.depth) for iid in self.specs}
        self.passes = 0  # passes started (loop)
        self.finished = False  # the recording was played to its end (and not looped)
        self._items: Iterator[_Item] = iter(())
        self._next: _Item | None = None
        self._session = ""  # the recorded session of the last message played
        self._base_ns = 0  # engine time at which the current pass started
        self._t0 = 0  # recorded event time of the pass's first message
        self._last_rec_ns = 0  # recorded event time of the last message played (never goes backwards)
        self._last_due_ns = 0
        self._open_pass(0, None)

    # ----------------------------------------------------------------- EventSource
    starts_on_subscriber = True

    @property
    def absolute_times(self) -> bool:
        return self.original_times

    @property
    def paced(self) -> bool:
        return self.speed is not None

    @property
    def description(self) -> str:
        return f"replay of {self.path.name} at {speed_text(self.speed)}{', looped' if self.loop else ''}"

    def event_counts(self) -> dict[str, int]:
        return {iid: replay.messages for iid, replay in self.books.items()}

    def bind(self, fanout: Fanout) -> None:
        """Give the fan-out the books' positions after the opening snapshots (the engine calls this once)."""
        for replay in self.books.values():
            if replay.book.sequence is not None:
                fanout.reset(replay, replay.book.sequence)

    async def run(self) -> None:
        """Nothing arrives by itself: the engine plays the recording (``advance``)."""

    def next_due_ns(self) -> int:
        if self._next is None:
            return END_NS if not self.loop else self._last_due_ns
        if self.speed is None:
            return 0
        return self._due_ns(self._next[1])

    def advance(
        self, fanout: Fanout, elapsed_ns: int, max_events: int | None = None, deadline_ns: int | None = None
    ) -> int:
        """Play the recorded messages due by ``elapsed_ns`` (all that are left when unpaced), at most
        ``max_events``, stopping once ``time.monotonic_ns()`` passes ``deadline_ns``."""
        count = 0
        time_base = fanout.time_base()
        while True:
            item = self._next
            if item is None:
                if not self.loop:
                    if not self.finished:
                        self.finished = True
                        logger.info("%s: played to its end; serving its last books", self.description)
                    break
                fanout.new_session()
                self._open_pass(self._last_due_ns, fanout)
                continue
            session, message = item
            due_ns = elapsed_ns if self.speed is None else self._due_ns(message)
            if due_ns > elapsed_ns:
                break
            if session != self._session:  # the recorded feed restarted: so does the replay's session
                self._session = session
                fanout.new_session()
            self._last_rec_ns = max(self._last_rec_ns, message.event_time_ns)
            self._last_due_ns = due_ns
            self._play(fanout, message, due_ns, time_base)
            self._next = next(self._items, None)
            count += 1
            if count == max_events or (deadline_ns is not None and monotonic_ns() >= deadline_ns):
                break
        return count

    # ----------------------------------------------------------------- playing
    def _due_ns(self, message: pb.BookMessage) -> int:
        recorded = max(self._last_rec_ns, message.event_time_ns)
        return self._base_ns + int((recorded - self._t0) / (self.speed or 1.0))

    def _messages(self) -> Iterator[_Item]:
        for record in self._reader:
            session = record.item.session_id
            for message in record.item.messages:
                yield session, message

    def _open_pass(self, at_ns: int, fanout: Fanout | None) -> None:
        """Start a pass at engine time ``at_ns``: read the recording from its start and apply its opening
        snapshots (to the fan-out too, when there is one yet)."""
        self.passes += 1
        self._items = self._messages()
        item = next(self._items, None)
        if item is None:
            cut = self._reader.truncated_at
            where = f" (it is cut short at byte {cut})" if cut is not None else ""
            raise BadRecording(f"{self.path} holds no recorded message{where}")
        self._session = item[0]
        self._base_ns = self._last_due_ns = at_ns
        self._t0 = self._last_rec_ns = item[1].event_time_ns
        primed: set[str] = set()
        while (
            item is not None
            and item[1].WhichOneof("body") == "snapshot"
            and item[0] == self._session
            and item[1].instrument_id not in primed  # (a second one, a resync, is played: subscribers get it)
        ):
            primed.add(item[1].instrument_id)
            replay, _ = self._apply(item[1], "snapshot")
            replay.time_ns = item[1].event_time_ns if self.original_times else at_ns
            if fanout is not None:
                fanout.reset(replay, item[1].sequence)
            item = next(self._items, None)
        self._next = item

    def _apply(
        self, message: pb.BookMessage, body: str | None, trades_wanted: bool = False
    ) -> tuple[ReplayBook, Sequence[Trade]]:
        """Apply one recorded message (``body``: its WhichOneof("body")) to its book, verified; its trades when
        wanted. BadRecording when it does not verify."""
        replay = self.books.get(message.instrument_id)
        if replay is None:
            raise BadRecording(f"{self.path}: a message of {message.instrument_id!r}, which its header does not list")
        try:
            trades, _ = apply_body(replay.book, message, body, trades_wanted=trades_wanted)
        except BookError as exc:
            raise BadRecording(f"{self.path}: {exc} (the recording is not whole)") from None
        replay.messages += 1
        return replay, trades

    def _play(self, fanout: Fanout, message: pb.BookMessage, due_ns: int, time_base: int) -> None:
        """Apply one recorded message and publish it (see the module docstring)."""
        derived = fanout.derives(message.instrument_id)  # a subscriber below the recorded depth
        body = message.WhichOneof("body")
        replay, trades = self._apply(message, body, trades_wanted=derived)
        if self.original_times:  # (the time base is then 0: Engine._time_base)
            replay.time_ns = message.event_time_ns
        else:
            replay.time_ns = due_ns
            message.event_time_ns = time_base + due_ns
        if body == "snapshot":
            fanout.reset(replay, message.sequence, native=message)
            return
        changes: list[LevelChange] = []
        if body == "update" and derived:
            changes = [LevelChange(_SIDES[c.side], c.price_ticks, c.size_lots) for c in message.update.changes]
        event = Event(message.sequence, due_ns, changes, trades, body == "heartbeat")
        fanout.publish(replay, (event,), message.event_time_ns, sequence=message.sequence, native=message)
