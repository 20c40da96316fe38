"""Row 1: level updates per second through the order book the core runs (feed_server.protocol.core): on the
compiled core against the pure-Python book doing the same work in the same run; on the pure core against bare
SortedDicts doing the same work.

The messages are built like the feed's: a book of 100 levels per side, then updates whose number of level
changes is drawn (seeded) from the sizes the feed really sends, measured at the start of the row by
:mod:`bench.update_sizes` (in-process engine, default rate, one depth-100 subscriber); the changes themselves
are sizes changed, levels added and emptied, mostly near the touch. Each update carries the checksum and the
book digest of the book after it, as the feed's do.

The model applies the snapshot, then every update with its sequence, crossing, checksum and digest verified.
The pure core's baseline does the same work with no model around it: two bare SortedDicts (bids keyed by negated price),
the same changes through the same paths as the model (a size replaced in place with ``dict.__setitem__``, as
the key is already in the sorted index), the checksum kept by the same :class:`ChainedChecksum` (a side rebuilt
only when a change reached its top levels), the digest kept change by change with the same CRC32 terms, and
both compared with the message's, per message. The ratio is then the model's own overhead (sequence check,
undo log, crossing check, error handling), not extra work.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from zlib import crc32

from sortedcontainers import SortedDict

from bench import update_sizes
from bench.report import Result, at_least
from bench.update_sizes import UpdateSizes
from feed_server.protocol.book import MAX_DEPTH, LevelChange, Side
from feed_server.protocol.book import OrderBook as PureOrderBook
from feed_server.protocol.checksum import ASK_TERM, BID_TERM, DIGEST_MASK, ChainedChecksum, book_digest
from feed_server.protocol.core import CORE, BookClass, OrderBook

__all__ = ["Messages", "build_messages", "run", "time_model", "time_raw"]

MID = 1_000_000
LEVELS_PER_SIDE = 100
_set_value = dict.__setitem__  # as the model: replace the size of a key the SortedDict already holds


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


def build_messages(count: int, sizes: UpdateSizes, seed: int = 1) -> Messages:
    """A snapshot and ``count`` updates of ``sizes.draw()`` changes each, checksums from a reference book."""
    rng = random.Random(seed)
    ref = PureOrderBook("BENCH")
    for i in range(1, LEVELS_PER_SIDE + 1):
        ref.set_level(Side.BID, MID - i, rng.randint(1, 500))
        ref.set_level(Side.ASK, MID + i, rng.randint(1, 500))
    bids, asks = ref.bids(), ref.asks()
    snapshot_checksum, snapshot_digest = ref.checksum(), ref.digest()
    updates: list[tuple[int, list[LevelChange], int, int]] = []
    for sequence in range(2, count + 2):
        wanted = sizes.draw(rng)
        changes: dict[tuple[Side, int], int] = {}
        while len(changes) < wanted:
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


def time_model(messages: Messages, book_class: BookClass) -> float:
    """Seconds to apply the snapshot and every update, verified, to a book of ``book_class``."""
    book = book_class("BENCH", MAX_DEPTH)
    start = time.perf_counter()
    book.apply_snapshot(1, messages.bids, messages.asks, messages.checksum, messages.digest)
    for sequence, changes, checksum, digest in messages.updates:
        book.apply_update(sequence, changes, checksum, digest)
    return time.perf_counter() - start


def time_raw(messages: Messages) -> float:
    """Seconds for the same work on two bare SortedDicts: the changes, the checksum and the digest per message."""
    bid_side = Side.BID
    start = time.perf_counter()
    bids: SortedDict = SortedDict({-p: s for p, s in messages.bids})
    asks: SortedDict = SortedDict(messages.asks)
    tracker = ChainedChecksum()
    digest = book_digest(messages.bids, messages.asks)
    if tracker.value(bids, asks) != messages.checksum or digest != messages.digest:
        raise RuntimeError("the baseline's snapshot does not match its checksum or digest")
    for sequence, changes, checksum, expected_digest in messages.updates:
        for change in changes:
            side, price, size = change.side, change.price, change.size
            if side is bid_side:
                levels, key, term = bids, -price, BID_TERM
                edge = tracker.bid_edge
                if edge is None or key <= edge:
                    tracker.bid_stale = True
            else:
                levels, key, term = asks, price, ASK_TERM
                edge = tracker.ask_edge
                if edge is None or key <= edge:
                    tracker.ask_stale = True
            old = levels.get(key, 0)
            if old != size:
                if old:
                    digest -= crc32(term % (price, old))
                if size:
                    digest += crc32(term % (price, size))
            if not size:
                if old:
                    del levels[key]
            elif old:
                _set_value(levels, key, size)
            else:
                levels[key] = size
        digest &= DIGEST_MASK
        if tracker.value(bids, asks) != checksum or digest != expected_digest:
            raise RuntimeError(f"the baseline's book does not match the checksum or digest of update {sequence}")
    return time.perf_counter() - start


def run(quick: bool) -> list[Result]:
    sizes = update_sizes.measure(20.0 if quick else 60.0)
    messages = build_messages(10_000 if quick else 50_000, sizes)
    repeats = 3 if quick else 7
    compiled = CORE == "compiled"
    # Best of several rounds, interleaved, so that both sides see the same machine noise. The baseline: on the
    # compiled core the pure-Python book doing the same work (the target is a ratio over it); on the pure core
    # bare SortedDicts with the same checksum and digest work (the ratio is then the model's own overhead).
    model = float("inf")
    base = float("inf")
    for _ in range(repeats):
        model = min(model, time_model(messages, OrderBook))
        base = min(base, time_model(messages, PureOrderBook) if compiled else time_raw(messages))
    updates = len(messages.updates)
    changes = messages.change_count + len(messages.bids) + len(messages.asks)
    if compiled:
        target, min_ratio = at_least(2_000_000, ">= 2,000,000 and >= 5x"), 5.0
        baseline_text = "baseline: the pure-Python book, same messages, same run"
    else:
        target, min_ratio = at_least(1_000_000, ">= 1,000,000 and >= 0.5x"), 0.5
        baseline_text = "baseline: bare SortedDicts, same ChainedChecksum and digest terms, checked per update"
    return [
        Result(
            "1",
            f"book apply: snapshot + feed-sized updates (mean {messages.change_count / updates:.2f} changes), "
            "checksum + digest verified per msg",
            changes / model,
            "levels/s",
            target,
            baseline=changes / base,
            min_ratio=min_ratio,
            note=(
                f"{updates:,} updates, best of {repeats}: {1e6 * model / updates:.2f} us/update verified, "
                f"baseline {1e6 * base / updates:.2f} us; changes per update drawn from the feed's: "
                f"{sizes.describe()}; {baseline_text}"
            ),
        )
    ]
