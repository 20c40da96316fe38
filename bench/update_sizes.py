"""How many level changes the feed puts in one update message, measured in-process for row 1.

An :class:`~feed_server.server.engine.Engine` with the default instruments, seed and rate (``python -m
feed_server``'s defaults), never started, one subscription to every instrument at depth 100, driven through
``seconds`` of simulated time in 1 ms steps (about how the engine's own loop wakes up at that rate): every
update message it publishes is counted by its number of level changes. Same seed, same counts.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from feed_server.protocol.book import MAX_DEPTH
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.server.engine import Engine

__all__ = ["DEFAULT_RATE", "UpdateSizes", "measure"]

DEFAULT_RATE = 50.0  # python -m feed_server's default --rate (order events per second per instrument)
STEP_NS = 1_000_000


@dataclass(frozen=True, slots=True)
class UpdateSizes:
    """Update messages by their number of level changes, and where they were measured."""

    counts: Counter[int]
    seconds: float
    rate: float
    depth: int
    seed: int

    @property
    def messages(self) -> int:
        return sum(self.counts.values())

    @property
    def mean(self) -> float:
        return sum(size * n for size, n in self.counts.items()) / self.messages

    def draw(self, rng: random.Random) -> int:
        """One message's number of changes, drawn with the measured frequencies."""
        sizes = sorted(self.counts)
        return rng.choices(sizes, weights=[self.counts[size] for size in sizes])[0]

    def describe(self) -> str:
        """``"1: 21,655 (88.1%), 2: 1,571 (6.4%), ... (mean 1.18; 24,589 updates in ...)"`` for a row's note."""
        total = self.messages
        shares = ", ".join(
            f"{size}: {self.counts[size]:,} ({100 * self.counts[size] / total:.1f}%)" for size in sorted(self.counts)
        )
        return (
            f"{shares} (mean {self.mean:.2f}; {total:,} updates in {self.seconds:g} s simulated, "
            f"--rate {self.rate:g}, seed {self.seed}, depth {self.depth})"
        )


def measure(seconds: float, rate: float = DEFAULT_RATE, depth: int = MAX_DEPTH, seed: int = 1) -> UpdateSizes:
    """Count the update messages an in-process engine publishes to one subscriber over ``seconds`` simulated."""
    engine = Engine(DEFAULT_INSTRUMENTS, seed=seed, rate=rate)
    subscription = engine.fanout.subscribe(None, depth)
    counts: Counter[int] = Counter()
    try:
        for step in range(1, int(seconds * 1e9) // STEP_NS + 1):
            engine.advance(step * STEP_NS)
            for message in subscription.take_nowait():
                if message.WhichOneof("body") == "update":
                    counts[len(message.update.changes)] += 1
        if subscription.resyncs:
            raise RuntimeError(f"the subscription was resynchronised {subscription.resyncs} times: counts incomplete")
    finally:
        engine.fanout.unsubscribe(subscription)
    if not counts:
        raise RuntimeError(f"the engine published no update in {seconds:g} s simulated")
    return UpdateSizes(counts, seconds, rate, depth, seed)
