"""The feed's core, whatever the transport: what a request may ask, and the answers, written once.

:class:`FeedCore` sits over the fan-out (feed_server.server.fanout) and is what both transports' adapters call:
the gRPC servicer (feed_server.server.service) and the NATS publisher (feed_server.server.nats_publisher) only
translate requests in and errors out. It

- validates a subscription or snapshot request once (:meth:`FeedCore.validate`): an unknown instrument id, a
  repeated id, more than ``MAX_INSTRUMENT_IDS`` ids, a depth outside 0..MAX_DEPTH (0: the default) or over the
  source's own depth;
- opens subscriptions (:meth:`FeedCore.subscribe`) and serves snapshots (:meth:`FeedCore.snapshot`, carrying
  the session id);
- answers the instrument list (:attr:`FeedCore.instruments`, one ``ListInstrumentsResponse``);
- says the feed's session and state: ``session_id``, ``source_stale(...)``, ``failure()`` (why the feed is
  broken).

It raises only RequestError subclasses (NoSuchInstrument, InvalidRequest, FeedStopped), each with its ``code``;
it imports neither grpc nor nats.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from feed_server.protocol.book import DEFAULT_DEPTH, MAX_DEPTH
from feed_server.protocol.errors import FeedStopped, InvalidRequest, NoSuchInstrument, quoted
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.wire import instrument_to_pb
from feed_server.server.fanout import Fanout
from feed_server.server.subscription import Subscription

__all__ = ["MAX_INSTRUMENT_IDS", "FeedCore", "instrument_listing"]

logger = logging.getLogger(__name__)

MAX_INSTRUMENT_IDS = 100


def instrument_listing(
    specs: Iterable[InstrumentSpec], source: str = "", max_depth: int = MAX_DEPTH
) -> pb.ListInstrumentsResponse:
    """The answer to ListInstruments (on gRPC and on NATS)."""
    return pb.ListInstrumentsResponse(
        instruments=[instrument_to_pb(spec) for spec in specs], source=source, max_depth=max_depth
    )


class FeedCore:
    """Requests to one feed and their answers, for every transport (see the module docstring).

    ``failure`` says why the feed is broken (its engine failed), or None while it is not."""

    def __init__(
        self,
        fanout: Fanout,
        specs: Iterable[InstrumentSpec],
        source: str = "",
        *,
        failure: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.fanout = fanout
        self.failure = failure
        self.instruments = instrument_listing(specs, source, fanout.max_depth)

    @property
    def instrument_ids(self) -> list[str]:
        """Every instrument id of the feed, in order."""
        return list(self.fanout.sources)

    @property
    def max_depth(self) -> int:
        """The deepest book a request may ask for (the source's depth)."""
        return self.fanout.max_depth

    @property
    def session_id(self) -> str:
        """The current session's id (see feed_server.server.fanout)."""
        return self.fanout.session_id

    def source_stale(self, instrument_id: str) -> str | None:
        """Why ``instrument_id``'s source cannot vouch for its book now, or None."""
        return self.fanout.source_stale(instrument_id)

    def validate(self, instrument_ids: Sequence[str], depth: int) -> tuple[list[str], int]:
        """The ids (every instrument when empty) and the effective depth (0: the default) of a request; raises
        NoSuchInstrument or InvalidRequest when it is invalid, FeedStopped once the feed is closed."""
        max_depth = self.fanout.max_depth
        default = min(DEFAULT_DEPTH, max_depth)
        if not 0 <= depth <= MAX_DEPTH:
            raise InvalidRequest(f"depth {depth} out of range: 1..{MAX_DEPTH} (0 means the default, {default})")
        if len(instrument_ids) > MAX_INSTRUMENT_IDS:
            raise InvalidRequest(f"too many instrument ids: {len(instrument_ids)} (at most {MAX_INSTRUMENT_IDS})")
        known = self.fanout.sources
        seen: set[str] = set()
        for iid in instrument_ids:
            if iid in seen:
                raise InvalidRequest(f"duplicate instrument id {quoted(iid)}")
            seen.add(iid)
            if iid not in known:
                raise NoSuchInstrument(f"unknown instrument id {quoted(iid)}")
        closed = self.fanout.closed_reason
        if closed is not None:
            raise FeedStopped(closed)
        depth = depth or default
        if depth > max_depth:
            note = f" ({self.fanout.depth_note})" if self.fanout.depth_note else ""
            raise InvalidRequest(f"depth {depth} out of range: 1..{max_depth}{note}")
        return (list(instrument_ids) or list(known)), depth

    def subscribe(self, instrument_ids: Sequence[str] | None, depth: int = 0) -> Subscription:
        """A new subscription (its buffer starts with an INITIAL snapshot of each instrument); ``instrument_ids``
        empty or None: every instrument. Raises a RequestError (see :meth:`validate`)."""
        ids, depth = self.validate(list(instrument_ids or ()), depth)
        return self.fanout.subscribe(ids, depth)

    def unsubscribe(self, subscription: Subscription) -> None:
        """End a subscription (idempotent)."""
        self.fanout.unsubscribe(subscription)

    def snapshot(self, instrument_id: str, depth: int = 0) -> pb.BookMessage:
        """A REQUEST snapshot of one instrument's book now, at ``depth`` (0: the default), carrying the session
        id. Raises a RequestError (see :meth:`validate`)."""
        ids, depth = self.validate([instrument_id], depth)
        snapshot = self.fanout.get_snapshot(ids[0], depth)
        snapshot.session_id = self.fanout.session_id  # a message built for this call alone
        return snapshot
