"""Where the feed stands, apart from its books: the session, each instrument's sequence and its source's state.

- The session (``session_id``, a random uuid hex sent on every stream item) names one run of sequences;
  :meth:`FeedState.new_session` starts another (a replay does at each pass).
- Each instrument's sequence is that of its last message (0: the initial book); it goes up by one per message,
  or takes the source's own sequence (a recording's).
- An instrument whose source cannot vouch for its book (a live exchange disconnected or resynchronising) has a
  reason; every message built for it carries the flag and the reason (:meth:`FeedState.stamp`).

The fan-out (feed_server.server.fanout) holds one and is the only writer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from feed_server.protocol.pb import market_data_pb2 as pb

__all__ = ["FeedState"]


class FeedState:
    """The session, the per-instrument sequences and the per-instrument source state (see the module docstring)."""

    def __init__(self, instrument_ids: Iterable[str]) -> None:
        self.session_id = uuid.uuid4().hex
        self._sequences: dict[str, int] = dict.fromkeys(instrument_ids, 0)
        self._stale: dict[str, str] = {}

    def new_session(self) -> str:
        """Start a new session; returns its id."""
        self.session_id = uuid.uuid4().hex
        return self.session_id

    def sequence(self, instrument_id: str) -> int:
        """The sequence of ``instrument_id``'s last message (0: none yet)."""
        return self._sequences[instrument_id]

    def advance(self, instrument_id: str, sequence: int | None = None) -> int:
        """The sequence of ``instrument_id``'s next message: one more, or ``sequence`` (the source's own)."""
        if sequence is None:
            sequence = self._sequences[instrument_id] + 1
        self._sequences[instrument_id] = sequence
        return sequence

    def source_stale(self, instrument_id: str) -> str | None:
        """Why ``instrument_id``'s source cannot vouch for its book now, or None."""
        return self._stale.get(instrument_id)

    def set_source_stale(self, instrument_id: str, reason: str | None) -> bool:
        """Record ``instrument_id``'s source state (``reason``, or None: whole); returns whether it changed."""
        if reason is None:
            return self._stale.pop(instrument_id, None) is not None
        changed = self._stale.get(instrument_id) != reason
        self._stale[instrument_id] = reason
        return changed

    def stamp(self, instrument_id: str, message: pb.BookMessage) -> None:
        """Mark a message built for ``instrument_id`` with its source's state, when the source is not whole."""
        why = self._stale.get(instrument_id)
        if why is not None:
            message.source_stale = True
            message.source_stale_reason = why
