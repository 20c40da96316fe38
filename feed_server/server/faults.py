"""Fault injection on one subscriber's outgoing messages, for testing consumers' gap and corruption handling.

A :class:`FaultInjector` transforms the message stream of one subscriber (never the engine's true book, never
another subscriber's stream): a fraction ``rate`` of the non-snapshot messages gets one fault, chosen from
``kinds``:

- ``drop``: the message is not sent (the consumer sees a sequence gap);
- ``duplicate``: the message is sent twice (the consumer sees a repeated sequence number);
- ``reorder``: the message is swapped with the next one (a gap, then an old sequence number);
- ``corrupt``: a copy is sent with a wrong checksum, sometimes with one level's size changed too (the consumer
  always sees a checksum mismatch);
- ``deep``: a copy of an update is sent with one more level far from the touch (``DEEP_OFFSET_TICKS`` beyond one
  of its changes, away from the spread), so beyond the top 10 levels: the checksum still matches and only the
  book digest tells (the consumer sees a digest mismatch).

Snapshots are never faulted, and a message held back for a swap is sent before any snapshot. Pure and
deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable

from feed_server.protocol.pb import market_data_pb2 as pb

__all__ = ["FAULT_KINDS", "FaultInjector", "parse_fault_kinds"]

FAULT_KINDS: tuple[str, ...] = ("drop", "duplicate", "reorder", "corrupt", "deep")
DEEP_OFFSET_TICKS = 5_000
DEEP_SIZE_LOTS = 7_777


def parse_fault_kinds(text: str) -> frozenset[str]:
    """``"drop,corrupt"`` -> {"drop", "corrupt"}; raises ValueError naming an unknown kind."""
    kinds = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(kinds - set(FAULT_KINDS))
    if unknown:
        raise ValueError(f"unknown fault kind {unknown[0]!r} (choose from {', '.join(FAULT_KINDS)})")
    if not kinds:
        raise ValueError(f"no fault kind given (choose from {', '.join(FAULT_KINDS)})")
    return frozenset(kinds)


class FaultInjector:
    """Applies random faults to a stream of messages (see the module docstring)."""

    def __init__(self, rate: float, kinds: Iterable[str] = FAULT_KINDS, seed: int = 0) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be within 0..1, got {rate}")
        self.rate = rate
        self.kinds = tuple(sorted(set(kinds)))
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"bad fault kinds {self.kinds!r}")
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._held: pb.BookMessage | None = None

    def apply(self, messages: Iterable[pb.BookMessage]) -> list[pb.BookMessage]:
        """The messages to send in place of ``messages``."""
        out: list[pb.BookMessage] = []
        rng = self._rng
        for message in messages:
            if message.HasField("snapshot"):
                self._flush(out)
                out.append(message)
                continue
            if self._held is not None:
                out.append(message)
                self._flush(out)
                continue
            if rng.random() >= self.rate:
                out.append(message)
                continue
            kind = rng.choice(self.kinds)
            if kind == "deep" and not (message.HasField("update") and message.update.changes):
                kind = "corrupt"  # a deep level needs a price to be placed from
            self.counts[kind] += 1
            if kind == "drop":
                continue
            if kind == "duplicate":
                out.append(message)
                out.append(message)
            elif kind == "reorder":
                self._held = message
            elif kind == "deep":
                out.append(self._deep(message))
            else:
                out.append(self._corrupt(message))
        return out

    def _flush(self, out: list[pb.BookMessage]) -> None:
        if self._held is not None:
            out.append(self._held)
            self._held = None

    def _deep(self, message: pb.BookMessage) -> pb.BookMessage:
        bad = pb.BookMessage()
        bad.CopyFrom(message)  # the original is shared with other subscribers
        near = bad.update.changes[self._rng.randrange(len(bad.update.changes))]
        away = -DEEP_OFFSET_TICKS if near.side == pb.SIDE_BID else DEEP_OFFSET_TICKS
        bad.update.changes.add(side=near.side, price_ticks=near.price_ticks + away, size_lots=DEEP_SIZE_LOTS)
        return bad  # checksum and digest as they were: right for the true book, wrong for this one

    def _corrupt(self, message: pb.BookMessage) -> pb.BookMessage:
        bad = pb.BookMessage()
        bad.CopyFrom(message)  # the original is shared with other subscribers
        changes = bad.update.changes if bad.HasField("update") else None
        if changes and self._rng.random() < 0.5:
            change = changes[self._rng.randrange(len(changes))]
            change.size_lots = change.size_lots + 1 if change.size_lots < 2 else change.size_lots - 1
        # The checksum is always made wrong too: a changed size below the checksummed levels must not pass.
        bad.checksum ^= 0x5A5A5A5A
        return bad
