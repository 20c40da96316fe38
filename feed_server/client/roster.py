"""One subscriber's instrument roster: which instruments it keeps a book of, as the feed's listings name them.

A :class:`Roster` holds the feed's instruments as its listings name them (``instruments``), a book and a sync
state machine (feed_server.client.sync) per subscribed instrument (``books`` and ``syncs``: the same two dicts
for the roster's life, changed in place), the depth of each instrument's stream (its checksums' depth), the
session each book's stream is of, and the instruments seen on a stream that no listing named (a feed that added
instruments since: a new listing is wanted, at most every RELIST_INTERVAL seconds). No ids subscribes to every
instrument the feed lists. The subscriber core (feed_server.client.keeper) hands it each listing and reads it;
the roster does no I/O, reads no clock (the caller passes the loop time) and logs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from feed_server.client.sync import InstrumentBook, InstrumentSync
from feed_server.protocol.core import OrderBook
from feed_server.protocol.errors import Code, UnknownInstrument, quoted
from feed_server.protocol.instruments import InstrumentSpec

__all__ = ["RELIST_INTERVAL", "Roster"]

RELIST_INTERVAL = 2.0  # at most one new instrument-list request this often (an unknown instrument was seen)


class Roster:
    """The instruments of one subscriber (see the module docstring).

    ``instrument_ids``: the subscribed ids (empty: every listed instrument); ``depth``: the depth asked for, the
    depth of a book whose stream's depth no listing said. ``dropped(instrument_id)`` is called for each book the
    roster forgets (subscribed to everything, a listing that no longer names it: a restarted feed dropped it).
    """

    def __init__(self, instrument_ids: tuple[str, ...], depth: int, *, dropped: Callable[[str], None]) -> None:
        self.instrument_ids = instrument_ids
        self.depth = depth
        self.instruments: dict[str, InstrumentSpec] = {}  # a new dict with each listing taken
        self.books: dict[str, InstrumentBook] = {}
        self.syncs: dict[str, InstrumentSync] = {}
        self._dropped = dropped
        self._listed: dict[str, InstrumentSpec] = {}  # the list as this connection's listing answered it
        self._depths: dict[str, int] = {}  # per instrument: the depth its stream's checksums are of
        self._unknown: set[str] = set()  # instruments seen on the stream that no listing named
        self._last_listing = 0.0  # loop time of the last listing taken

    def take_listing(
        self, specs: Sequence[InstrumentSpec], depths: dict[str, int], now: float, *, in_session: bool
    ) -> None:
        """Take the feed's instrument list of this connection and the depth of each instrument's stream (its
        checksums' depth), at loop time ``now``.

        Within one session of the feed (``in_session``) its instruments cannot change, so a list that differs
        from the session's (a response damaged on the way: a listing carries no checksum) only adds what it names
        anew; the list replaces the known one (forgetting the instruments it lacks) only when the stream turns out
        to be a new session (``new_session``) or before the first. Raises UnknownInstrument for a subscribed id
        the list lacks."""
        for instrument_id, depth in depths.items():
            self._depths.setdefault(instrument_id, depth)
        listed = {spec.instrument_id: spec for spec in specs}
        self._listed = listed
        self._unknown.difference_update(listed)
        self._last_listing = now
        if in_session:
            listed = {**listed, **self.instruments}  # the session's own specs win over this listing
        self._take(listed)

    def new_session(self) -> None:
        """The stream is of a new session of the feed (a restarted feed): its own list, as this connection's
        listing answered it, replaces the known one."""
        self._take(self._listed)

    def unlisted(self, instrument_id: str) -> None:
        """A message of ``instrument_id``, which has no book here: subscribed to every instrument, it is one that
        no listing named."""
        if not self.instrument_ids:
            self._unknown.add(instrument_id)

    def wants_listing(self, now: float) -> bool:
        """Whether instruments no listing named were seen, and the last listing is old enough at ``now`` to ask
        again."""
        due = now - self._last_listing >= RELIST_INTERVAL
        return bool(self._unknown) and due

    def depth_of(self, instrument_id: str) -> int:
        """The depth at which ``instrument_id``'s book is kept (the depth of its stream's checksums)."""
        return self._depths.get(instrument_id, self.depth)

    def session_of(self, instrument_id: str) -> str | None:
        """The feed session ``instrument_id``'s stream is of (a snapshot of another session is never applied)."""
        entry = self.books.get(instrument_id)
        return entry.session_id if entry is not None else None

    def _take(self, listed: dict[str, InstrumentSpec]) -> None:
        self.instruments = listed
        wanted = self.instrument_ids or tuple(self.instruments)
        if not self.instrument_ids:  # subscribed to everything: forget instruments a restarted feed dropped
            for gone in [iid for iid in self.books if iid not in self.instruments]:
                del self.books[gone]
                del self.syncs[gone]
                self._dropped(gone)
        for instrument_id in wanted:
            spec = self.instruments.get(instrument_id)
            if spec is None:
                raise UnknownInstrument(f"unknown instrument id {quoted(instrument_id)}", Code.UNKNOWN_INSTRUMENT)
            entry = self.books.get(instrument_id)
            if entry is None:
                entry = InstrumentBook(spec, OrderBook(instrument_id, self.depth_of(instrument_id)))
                self.books[instrument_id] = entry
                self.syncs[instrument_id] = InstrumentSync(entry)
            else:
                entry.spec = spec
