"""The simulator's true book, followed forward to each book a consumer shows.

The feed publishes one message per instrument per engine slice (one event at low rates, several at high rates,
as many as were due when the engine woke up), so a message's sequence number counts messages, not order events,
and which events a message holds depends on the wall clock. What does not depend on it: every book a consumer
shows must be the true book after some whole number of events of the deterministic simulator (same ``--seed``
and ``--rate``), and a later message can only show a later (or the same) state. :class:`TruthCursor` checks
exactly that: :meth:`TruthCursor.seek` steps a fresh simulator forward, never back, to the first state whose
top ``depth`` levels are the consumer's, and fails when no state within ``limit`` events matches. A wrong book
(one level, one size) matches no true state, so the check fails on it.
"""

from __future__ import annotations

from collections.abc import Sequence

from feed_server.protocol.book import MAX_DEPTH
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.server.simulator import InstrumentSimulator

__all__ = ["TruthCursor"]

Levels = Sequence[tuple[int, int]]


class TruthCursor:
    """One instrument's true book, stepped forward to each state a consumer shows (see the module docstring)."""

    def __init__(
        self, spec: InstrumentSpec, seed: int, rate: float, depth: int = MAX_DEPTH, limit: int = 200_000
    ) -> None:
        self.sim = InstrumentSimulator(spec, seed, rate)
        self.depth = depth
        self.limit = limit

    @property
    def events(self) -> int:
        """How many events the truth has run: the state the last seek found."""
        return self.sim.sequence

    def levels(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The true book's top ``depth`` bids and asks now."""
        book = self.sim.book
        return book.bids(self.depth), book.asks(self.depth)

    def seek(self, bids: Levels, asks: Levels, what: str = "a book") -> int:
        """Step forward to the first true state equal to ``bids``/``asks`` (top ``depth``); return its event count.

        AssertionError naming ``what`` when none of the next ``limit`` states matches."""
        wanted = (list(bids), list(asks))
        for _ in range(self.limit + 1):
            if self.levels() == wanted:
                return self.sim.sequence
            self.sim.next_event()
        raise AssertionError(
            f"{self.sim.instrument_id}: {what} is no true state within {self.limit} events after event "
            f"{self.sim.sequence - self.limit - 1}"
        )
