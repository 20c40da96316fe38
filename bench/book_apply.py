"""Row 1: level updates per second through the order book model, against raw SortedDict set/delete.

The messages are built like the feed's: a book of about 100 levels per side, then updates of
``CHANGES_PER_MESSAGE`` level changes each (sizes changed, levels added and emptied, mostly near the touch),
each with the checksum and the book digest of the book after it, as the feed sends them. The model applies the
snapshot, then every update with its sequence, checksum and digest verified; the baseline applies the same
changes to two bare SortedDicts.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from sortedcontainers import SortedDict

from bench.report import Result, at_least
from feed_server.protocol.book import LevelChange, OrderBook, Side

__all__ = ["CHANGES_PER_MESSAGE", "Messages", "build_messages", "run"]

CHANGES_PER_MESSAGE = 16
MID = 1_000_000
LEVELS_PER_SIDE = 100


@dataclass(frozen=True, slots=True)
class Messages:
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]
    checksum: int
    digest: int
    updates: list[tuple[int, list[LevelChange], int, int]]  # (sequence, changes, checksum, book digest)

    @property
    def change_count(self) -> int:
        return sum(len(changes) for _, changes, _, _ in self.updates)


def build_messages(count: int, seed: int = 1, changes_per_message: int = CHANGES_PER_MESSAGE) -> Messages:
    """A snapshot and ``count`` updates, with checksums computed by a reference book."""
    rng = random.Random(seed)
    ref = OrderBook("BENCH")
    for i in range(1, LEVELS_PER_SIDE + 1):
        ref.set_level(Side.BID, MID - i, rng.randint(1, 500))
        ref.set_level(Side.ASK, MID + i, rng.randint(1, 500))
    bids, asks = ref.bids(), ref.asks()
    snapshot_checksum, snapshot_digest = ref.checksum(), ref.digest()
    updates: list[tuple[int, list[LevelChange], int, int]] = []
    for sequence in range(2, count + 2):
        changes: dict[tuple[Side, int], int] = {}
        while len(changes) < changes_per_message:
            side = Side.BID if rng.random() < 0.5 else Side.ASK
            distance = min(int(rng.expovariate(1 / 12)) + 1, 2 * LEVELS_PER_SIDE)
            price = MID - distance if side is Side.BID else MID + distance
            roll = rng.random()
            size = 0 if roll < 0.3 else rng.randint(1, 500)
            changes[(side, price)] = size
        event = [LevelChange(side, price, size) for (side, price), size in changes.items()]
        for change in event:
            ref.set_level(change.side, change.price, change.size)
        updates.append((sequence, event, ref.checksum(), ref.digest()))
    return Messages(bids, asks, snapshot_checksum, snapshot_digest, updates)


def time_model(messages: Messages) -> float:
    """Seconds to apply the snapshot and every update, verified."""
    book = OrderBook("BENCH")
    start = time.perf_counter()
    book.apply_snapshot(1, messages.bids, messages.asks, messages.checksum, messages.digest)
    for sequence, changes, checksum, digest in messages.updates:
        book.apply_update(sequence, changes, checksum, digest)
    return time.perf_counter() - start


def time_raw(messages: Messages) -> float:
    """Seconds to set/delete the same prices in two bare SortedDicts (bids keyed by negated price)."""
    start = time.perf_counter()
    bids: SortedDict = SortedDict({-p: s for p, s in messages.bids})
    asks: SortedDict = SortedDict(messages.asks)
    for _, changes, _, _ in messages.updates:
        for change in changes:
            if change.side is Side.BID:
                levels, key = bids, -change.price
            else:
                levels, key = asks, change.price
            if change.size:
                levels[key] = change.size
            else:
                levels.pop(key, None)
    return time.perf_counter() - start


def run(quick: bool) -> list[Result]:
    messages = build_messages(5_000 if quick else 20_000)
    repeats = 3 if quick else 7
    # Best of several rounds, interleaved, so that both sides see the same machine noise.
    model = float("inf")
    raw = float("inf")
    for _ in range(repeats):
        model = min(model, time_model(messages))
        raw = min(raw, time_raw(messages))
    changes = messages.change_count + len(messages.bids) + len(messages.asks)
    return [
        Result(
            "1",
            f"book apply: snapshot + {CHANGES_PER_MESSAGE}-change updates, checksum + digest verified per msg",
            changes / model,
            "levels/s",
            at_least(1_000_000, ">= 1,000,000 and >= 0.5x"),
            baseline=changes / raw,
            min_ratio=0.5,
            note=f"{len(messages.updates)} updates, best of {repeats}; baseline: raw SortedDict set/delete",
        )
    ]
