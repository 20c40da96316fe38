"""The fan-out: the messages of the sources' events, built once per (instrument, depth), and their delivery.

Who subscribes at which depth is the registry's (feed_server.server.registry); the session, the sequences and
the sources' state are the feed state's (feed_server.server.feed_state); each subscriber's bounded buffer is its
:class:`Subscription`'s. The fan-out is what a source publishes to (``publish``, ``reset``, ``set_source_stale``,
``new_session``), and the one writer of the other three.

The engine (feed_server.server.engine) hands :meth:`Fanout.publish` the events of one instrument that it ran in
one slice (one event at low rates, several when events come faster than the engine wakes up); they become ONE
message, and the instrument's sequence goes up by one (it counts messages, as exchanges' update ids count
their diff messages, not order events). For each depth currently subscribed on that instrument it builds one
``pb.BookMessage`` (the depth view's net level changes over those events, at most one per price and side, plus
every trade in execution order; or a heartbeat when the events were all heartbeats), computes each checksum once
(the book's own for the top 10 levels, kept change by change; a :class:`ChainedChecksum` per smaller level
count, re-read only on the side the changes reach), sets the
view's book digest (kept change by change by the depth view), and hands the same message object to every
subscriber at that depth. Events that leave a depth's view unchanged still give it an Update with no changes, so
sequences are contiguous and identical for every subscriber. Nothing is built for an instrument nobody
subscribes to (its sequence still counts on, so a later subscriber's snapshot carries the true position).

Slow subscribers. Each :class:`Subscription` has a bounded buffer (``max_backlog`` messages). Publishing never
waits for a subscriber. When a subscriber's buffer is full, its whole backlog is dropped and replaced by a fresh
``SNAPSHOT_REASON_RESYNC`` snapshot of each of its instruments, taken at that moment, so its stream stays
consistent: what follows the snapshots continues from their sequence numbers. The subscriber is never
disconnected for being slow; ``Subscription.resyncs`` counts how often this happened to it.

A subscription's consumer reads everything buffered at once (``await subscription.next_batch()`` or
``async for batch in subscription``), at most ``max_batch`` messages per batch, so one gRPC stream item
carries many messages under load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from feed_server.protocol.book import CHECKSUM_LEVELS, DEFAULT_DEPTH, MAX_DEPTH, OrderBook, Side
from feed_server.protocol.checksum import ChainedChecksum, book_digest, compute_checksum
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.wire import heartbeat_message, snapshot_message, update_message
from feed_server.server.depth_view import DepthView
from feed_server.server.feed_state import FeedState
from feed_server.server.registry import Group, Registry
from feed_server.server.simulator import Event
from feed_server.server.subscription import Subscription

__all__ = ["DEFAULT_MAX_BACKLOG", "DEFAULT_MAX_BATCH", "BookSource", "Fanout", "Subscription"]

_HEARTBEAT = Event(0, 0, heartbeat=True)  # what set_source_stale publishes: the state, in a heartbeat

logger = logging.getLogger(__name__)

DEFAULT_MAX_BACKLOG = 50_000
DEFAULT_MAX_BATCH = 5_000


class BookSource(Protocol):
    """What the fan-out reads of a source (the simulator today): its true book and where it stands."""

    @property
    def instrument_id(self) -> str: ...

    @property
    def book(self) -> OrderBook: ...

    @property
    def time_ns(self) -> int: ...  # the source's time of its last event, ns from the engine's time base


class Fanout:
    """Subscriptions to a set of sources, and the messages of their events (see the module docstring).

    ``time_base`` gives the wall time (ns since the epoch) of the sources' time 0: a message's
    ``event_time_ns`` is ``time_base() + source.time_ns``. ``max_depth`` is the deepest book the sources hold
    (``depth_note`` says why, in a refusal of a deeper request).

    Sessions. ``session_id`` names the run of sequences subscribers see (a random uuid hex, sent on every stream
    item). :meth:`new_session` starts another (a replay does at each pass, or where its recording's feed
    restarted): each subscriber's buffer marks where it starts (what it holds of the old session is still
    delivered, under the old session's id), and the source then resets every instrument (:meth:`reset`), so each
    open stream's first item of the new session starts with a snapshot of each of its instruments, as a new
    stream would.
    """

    def __init__(
        self,
        sources: Mapping[str, BookSource],
        time_base: Callable[[], int],
        *,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_depth: int = MAX_DEPTH,
        depth_note: str = "",
    ) -> None:
        if max_backlog < 1 or max_batch < 1:
            raise ValueError("max_backlog and max_batch must be positive")
        if not 1 <= max_depth <= MAX_DEPTH:
            raise ValueError(f"max_depth must be within 1..{MAX_DEPTH}, got {max_depth}")
        self.sources = sources
        self.time_base = time_base
        self.max_depth = max_depth
        self.depth_note = depth_note
        self.state = FeedState(sources)  # the session, the sequences, the sources' state
        # A resync puts one snapshot per instrument in the buffer: the backlog must hold at least that.
        self.registry = Registry(sources, max(max_backlog, 2 * len(sources)), max_batch)
        self._groups = {iid: self.registry.groups(iid) for iid in sources}  # the registry's, read per message
        # Per instrument: the checksum of its top n levels for each n under CHECKSUM_LEVELS (depth-limited
        # subscribers); the book keeps its own checksum of the top CHECKSUM_LEVELS.
        self._checksums: dict[str, dict[int, ChainedChecksum]] = {
            iid: {n: ChainedChecksum(n) for n in range(1, CHECKSUM_LEVELS)} for iid in sources
        }
        self.closed_reason: str | None = None  # set by close_all(): no new subscription or snapshot after it
        self.messages_published = 0  # messages built (one per event per subscribed depth), all instruments
        self.resyncs = 0  # resyncs of slow subscribers so far, all subscribers

    @property
    def session_id(self) -> str:
        """The current session's id (see the class docstring)."""
        return self.state.session_id

    # ----------------------------------------------------------------- subscribers
    def subscribe(self, instrument_ids: Sequence[str] | None, depth: int = DEFAULT_DEPTH) -> Subscription:
        """Register a subscriber; its buffer starts with an INITIAL snapshot of each instrument.

        Registration and the snapshots happen in one synchronous step, so nothing is missed or duplicated.
        ``instrument_ids`` empty or None means every instrument. The request was validated already (by
        feed_server.server.feed_core): known, distinct ids and a depth within 1..max_depth.
        """
        ids = list(instrument_ids) if instrument_ids else list(self.sources)
        sub = self.registry.add(ids, depth, self.session_id, self._new_view)
        for iid in ids:
            sub.push(self._snapshot(iid, depth, pb.SNAPSHOT_REASON_INITIAL))
        return sub

    def _new_view(self, instrument_id: str, depth: int) -> DepthView:
        """The depth view of a new (instrument, depth) group."""
        if depth < CHECKSUM_LEVELS:  # its chained checksum was not kept up to date while nobody used it
            self._checksums[instrument_id][depth].invalidate()
        return DepthView(self.sources[instrument_id].book, depth)

    def unsubscribe(self, sub: Subscription) -> None:
        """Remove a subscriber (idempotent) and end its iteration."""
        self.registry.remove(sub)

    def close_all(self, reason: str = "the feed is shutting down") -> None:
        """End every subscription (their consumers get None / StopAsyncIteration) and refuse new ones."""
        if self.closed_reason is None:
            self.closed_reason = reason
        for sub in self.registry.subscriptions():
            self.registry.remove(sub)

    def new_session(self) -> None:
        """Start a new session: a new ``session_id``, marked in every subscriber's buffer after what it holds. The
        source must then :meth:`reset` every instrument (see the class docstring)."""
        self.registry.mark_session(self.state.new_session())
        logger.info("new session %s", self.session_id)

    def get_snapshot(self, instrument_id: str, depth: int = DEFAULT_DEPTH) -> pb.BookMessage:
        """A REQUEST snapshot of one instrument's book now, at ``depth`` (validated already: see subscribe)."""
        return self._snapshot(instrument_id, depth, pb.SNAPSHOT_REASON_REQUEST)

    def _snapshot(self, instrument_id: str, depth: int, reason: int) -> pb.BookMessage:
        source = self.sources[instrument_id]
        book = source.book
        n = min(CHECKSUM_LEVELS, depth)
        bids, asks = book.bids(depth), book.asks(depth)
        message = snapshot_message(
            instrument_id,
            self.state.sequence(instrument_id),
            self.time_base() + source.time_ns,
            compute_checksum(bids[:n], asks[:n]),
            bids,
            asks,
            reason,
            book_digest(bids, asks),
        )
        self.state.stamp(instrument_id, message)
        return message

    def set_source_stale(self, source: BookSource, reason: str | None, event_time_ns: int) -> None:
        """``source`` can no longer vouch for its book (``reason``), or can again (None): every message built
        for it from now on says so, and a heartbeat takes the change to every subscriber at once."""
        if self.state.set_source_stale(source.instrument_id, reason):
            self.publish(source, (_HEARTBEAT,), event_time_ns)

    def sequence(self, instrument_id: str) -> int:
        """The sequence of ``instrument_id``'s last message (0: none yet)."""
        return self.state.sequence(instrument_id)

    def source_stale(self, instrument_id: str) -> str | None:
        """Why ``instrument_id``'s source cannot vouch for its book now, or None."""
        return self.state.source_stale(instrument_id)

    def _resync(self, sub: Subscription) -> None:
        """Drop a full subscriber's backlog and replace it with fresh snapshots."""
        snapshots = [self._snapshot(iid, sub.depth, pb.SNAPSHOT_REASON_RESYNC) for iid in sub.instrument_ids]
        sub.resync(snapshots, self.session_id)
        self.resyncs += 1
        logger.info(
            "subscriber %d fell %d messages behind: backlog dropped, resync snapshots sent (resync #%d)",
            sub.sub_id,
            sub.max_backlog,
            sub.resyncs,
        )

    # ----------------------------------------------------------------- publishing
    def derives(self, instrument_id: str) -> bool:
        """Whether a subscriber of ``instrument_id`` is at a depth under ``max_depth`` (its messages are then
        derived from the events' changes, not taken as published: see :meth:`publish`)."""
        return any(depth != self.max_depth for depth in self.registry.groups(instrument_id))

    def publish(
        self,
        source: BookSource,
        events: Sequence[Event],
        event_time_ns: int,
        *,
        sequence: int | None = None,
        native: pb.BookMessage | None = None,
    ) -> None:
        """Build and buffer the one message of ``events``: one or more consecutive events of ``source``, already
        applied to its book, the last at ``event_time_ns``. The instrument's sequence goes up by one, or becomes
        ``sequence`` (a source with sequences of its own, such as a recording).

        ``native``: the message as the source already has it at ``max_depth`` (a recorded message); subscribers
        at that depth get it as it is, and only other depths are built (from the events' changes, which may then
        be left empty when :meth:`derives` is false)."""
        iid = source.instrument_id
        sequence = self.state.advance(iid, sequence)
        groups = self._groups[iid]
        if not groups:
            return
        if len(events) == 1:
            event = events[0]
            changes, trades, heartbeat = event.changes, event.trades, event.heartbeat
        else:
            changes = [change for event in events for change in event.changes]
            trades = [trade for event in events for trade in event.trades]
            heartbeat = all(event.heartbeat for event in events)
        book = source.book
        checksums = self._checksums[iid]
        source_stale = self.state.source_stale(iid) is not None
        used: dict[int, int] = {}  # checksum by level count, computed once per message
        for depth, group in groups.items():
            if native is not None and depth == self.max_depth:
                self._deliver(group, native)
                continue
            n = depth if depth < CHECKSUM_LEVELS else CHECKSUM_LEVELS
            checksum = used.get(n)
            if checksum is None:
                if n == CHECKSUM_LEVELS:  # the book keeps its own, change by change
                    checksum = used[n] = book.checksum()
                else:
                    tracker = checksums[n]
                    tracker.note(changes)
                    checksum = used[n] = tracker.value(book.key_levels(Side.BID), book.key_levels(Side.ASK))
            view = group.view
            if heartbeat:
                message = heartbeat_message(iid, sequence, event_time_ns, checksum, view.digest)
            else:
                message = update_message(
                    iid, sequence, event_time_ns, checksum, view.diff(changes), trades, view.digest
                )
            if source_stale:
                self.state.stamp(iid, message)
            self._deliver(group, message)

    def reset(self, source: BookSource, sequence: int, native: pb.BookMessage | None = None) -> None:
        """``source``'s book was replaced (a recorded snapshot): its sequence becomes ``sequence`` and every
        subscriber of it gets a snapshot of the new book (``native`` as it is at ``max_depth``, built ones,
        reason RESYNC, at other depths)."""
        iid = source.instrument_id
        self.state.advance(iid, sequence)
        for tracker in self._checksums[iid].values():
            tracker.invalidate()
        for depth, group in self.registry.groups(iid).items():
            group.view = DepthView(source.book, depth)
            if native is not None and depth == self.max_depth:
                self._deliver(group, native)
            else:
                self._deliver(group, self._snapshot(iid, depth, pb.SNAPSHOT_REASON_RESYNC))

    def _deliver(self, group: Group, message: pb.BookMessage) -> None:
        """Buffer one message for every subscriber of ``group`` (resynchronising a full one)."""
        self.messages_published += 1
        for sub in group.subscribers:
            if not sub.push(message):
                # The snapshots are taken after this message's events: they replace this message too.
                self._resync(sub)
