"""The price-level order book model shared by the server, the CLI client and the dashboard.

Pure and I/O-free: prices are integer ticks and sizes integer lots. A book is driven by snapshots and
updates carrying a sequence number and a checksum; ``apply_*`` refuses a message that skips a sequence
number, leaves the book crossed or does not match its checksum, and leaves the book exactly as it was.

The checksum (see proto/market_data.proto) is CRC32 of ``"<bids>|<asks>"``: the top ``min(10, depth)``
levels per side, best first, each ``"<price_ticks>:<size_lots>"``, joined by ``","``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from enum import IntEnum
from itertools import islice
from typing import NamedTuple

from sortedcontainers import SortedDict

from feed_server.protocol.errors import ChecksumMismatch, CrossedBook, InvalidMessage, SequenceGap

CHECKSUM_LEVELS = 10
MAX_DEPTH = 100
DEFAULT_DEPTH = 20

__all__ = [
    "CHECKSUM_LEVELS",
    "DEFAULT_DEPTH",
    "MAX_DEPTH",
    "DepthView",
    "LevelChange",
    "OrderBook",
    "Side",
    "Trade",
    "compute_checksum",
]


class Side(IntEnum):
    """Book side; the values are the wire enum's."""

    BID = 1
    ASK = 2


class LevelChange(NamedTuple):
    """The new total size at one price; size 0 removes the level. (A NamedTuple: made on every event.)"""

    side: Side
    price: int
    size: int


class Trade(NamedTuple):
    """One execution: price in ticks, size in lots, and the side of the incoming order."""

    price: int
    size: int
    aggressor: Side


Level = tuple[int, int]

_set_value = dict.__setitem__  # replaces the value of a key a SortedDict already holds, skipping its index


def compute_checksum(bids: Iterable[Level], asks: Iterable[Level]) -> int:
    """CRC32 of the canonical string of the given levels (best first), as an unsigned 32-bit int."""
    text = ",".join([f"{p}:{s}" for p, s in bids]) + "|" + ",".join([f"{p}:{s}" for p, s in asks])
    return zlib.crc32(text.encode("ascii"))


class OrderBook:
    """One instrument's price-level book.

    ``depth`` is the number of levels per side the book is fed with (the subscription's depth); it only
    decides how many levels the checksum covers: ``min(10, depth)``.
    """

    __slots__ = (
        "_ask_edge",
        "_asks",
        "_bid_edge",
        "_bids",
        "_checksum",
        "checksum_levels",
        "depth",
        "instrument_id",
        "sequence",
    )

    def __init__(self, instrument_id: str, depth: int = MAX_DEPTH) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.instrument_id = instrument_id
        self.depth = depth
        self.checksum_levels = min(CHECKSUM_LEVELS, depth)
        self.sequence: int | None = None  # None until the first snapshot
        # Bids are keyed by negated price so that both sides iterate best first.
        self._bids: SortedDict = SortedDict()
        self._asks: SortedDict = SortedDict()
        # The checksum is cached until a change reaches the checksummed levels: a change at a key at or
        # better than a side's edge (the key of its last checksummed level; None: the side has fewer levels,
        # so any change counts) invalidates it. Keys ascend best first on both sides.
        self._checksum: int | None = None
        self._bid_edge: int | None = None
        self._ask_edge: int | None = None

    # ----------------------------------------------------------------- reading
    def best_bid(self) -> Level | None:
        """(price, size) of the highest bid, or None."""
        if not self._bids:
            return None
        key, size = self._bids.peekitem(0)
        return -key, size

    def best_ask(self) -> Level | None:
        """(price, size) of the lowest ask, or None."""
        if not self._asks:
            return None
        return self._asks.peekitem(0)  # type: ignore[no-any-return]

    def spread(self) -> int | None:
        """Best ask minus best bid in ticks, or None when a side is empty."""
        if not self._bids or not self._asks:
            return None
        return self._asks.keys()[0] + self._bids.keys()[0]  # type: ignore[no-any-return]

    def mid(self) -> float | None:
        """Mid price in ticks (may end in .5), or None when a side is empty."""
        if not self._bids or not self._asks:
            return None
        best_ask: int = self._asks.keys()[0]
        neg_best_bid: int = self._bids.keys()[0]
        return (best_ask - neg_best_bid) / 2

    def bids(self, n: int | None = None) -> list[Level]:
        """The top n bid levels (all when n is None), best (highest) first."""
        keys = self._bids.keys() if n is None else islice(self._bids, n)
        values = self._bids
        return [(-k, values[k]) for k in keys]

    def asks(self, n: int | None = None) -> list[Level]:
        """The top n ask levels (all when n is None), best (lowest) first."""
        keys = self._asks.keys() if n is None else islice(self._asks, n)
        values = self._asks
        return [(k, values[k]) for k in keys]

    def top(self, side: Side, n: int | None = None) -> list[Level]:
        """The top n levels of one side, best first."""
        return self.bids(n) if side is Side.BID else self.asks(n)

    def size_at(self, side: Side, price: int) -> int:
        """The total size resting at a price (0 when there is no level)."""
        if side is Side.BID:
            return self._bids.get(-price, 0)  # type: ignore[no-any-return]
        return self._asks.get(price, 0)  # type: ignore[no-any-return]

    def level_count(self, side: Side) -> int:
        return len(self._bids) if side is Side.BID else len(self._asks)

    def checksum(self) -> int:
        """The checksum of the book as it is now (see the module docstring)."""
        if self._checksum is None:
            n = self.checksum_levels
            bids, asks = self._bids, self._asks
            # Iterating a SortedDict from the start is cheaper than slicing its keys view.
            bid_keys = list(islice(bids, n))
            ask_keys = list(islice(asks, n))
            text = ",".join([f"{-k}:{bids[k]}" for k in bid_keys]) + "|" + ",".join(
                [f"{k}:{asks[k]}" for k in ask_keys]
            )
            self._checksum = zlib.crc32(text.encode("ascii"))
            self._bid_edge = bid_keys[-1] if len(bid_keys) == n else None
            self._ask_edge = ask_keys[-1] if len(ask_keys) == n else None
        return self._checksum

    def _touch(self, is_bid: bool, key: int) -> None:
        """Invalidate the cached checksum if a change at ``key`` reaches the checksummed levels."""
        if self._checksum is not None:
            edge = self._bid_edge if is_bid else self._ask_edge
            if edge is None or key <= edge:
                self._checksum = None

    def is_crossed(self) -> bool:
        return bool(self._bids) and bool(self._asks) and -self._bids.keys()[0] >= self._asks.keys()[0]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OrderBook):
            return NotImplemented
        return (
            self.instrument_id == other.instrument_id
            and self._bids == other._bids
            and self._asks == other._asks
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"OrderBook({self.instrument_id!r}, seq={self.sequence}, "
            f"bid={self.best_bid()}, ask={self.best_ask()}, levels={len(self._bids)}/{len(self._asks)})"
        )

    # ----------------------------------------------------------------- writing, unchecked
    def set_level(self, side: Side, price: int, size: int) -> None:
        """Set one level without any check (the simulator's own fast path). Size 0 removes it."""
        if side is Side.BID:
            self._touch(True, -price)
            if size:
                self._bids[-price] = size
            else:
                self._bids.pop(-price, None)
        else:
            self._touch(False, price)
            if size:
                self._asks[price] = size
            else:
                self._asks.pop(price, None)

    def clear(self) -> None:
        self._bids.clear()
        self._asks.clear()
        self._checksum = None
        self.sequence = None

    # ----------------------------------------------------------------- writing, checked
    def apply_snapshot(
        self, sequence: int, bids: Sequence[Level], asks: Sequence[Level], checksum: int | None = None
    ) -> None:
        """Replace the whole book. Refuses (and keeps the old book) a crossed or mismatching snapshot."""
        new_bids = SortedDict()
        new_asks = SortedDict()
        for price, size in bids:
            if size <= 0:
                raise InvalidMessage(self.instrument_id, sequence, f"snapshot bid {price} has size {size}")
            new_bids[-price] = size
        for price, size in asks:
            if size <= 0:
                raise InvalidMessage(self.instrument_id, sequence, f"snapshot ask {price} has size {size}")
            new_asks[price] = size
        if new_bids and new_asks and -new_bids.keys()[0] >= new_asks.keys()[0]:
            raise CrossedBook(self.instrument_id, sequence, -new_bids.keys()[0], new_asks.keys()[0])
        old = self._bids, self._asks, self._checksum, self._bid_edge, self._ask_edge
        self._bids, self._asks, self._checksum = new_bids, new_asks, None
        if checksum is not None:
            computed = self.checksum()
            if computed != checksum:
                self._bids, self._asks, self._checksum, self._bid_edge, self._ask_edge = old
                raise ChecksumMismatch(self.instrument_id, sequence, checksum, computed)
        self.sequence = sequence

    def apply_update(self, sequence: int, changes: Iterable[LevelChange], checksum: int | None = None) -> None:
        """Apply one event's level changes together.

        Raises SequenceGap unless ``sequence`` is the next one, CrossedBook if the result is crossed,
        ChecksumMismatch if it does not match ``checksum``; in every case the book is left unchanged.
        """
        self._check_next(sequence)
        bids, asks = self._bids, self._asks
        bid_edge, ask_edge, cached_checksum = self._bid_edge, self._ask_edge, self._checksum
        stale_checksum = cached_checksum is None
        undo: list[tuple[SortedDict, int, int]] = []
        try:
            for change in changes:
                side, price, size = change.side, change.price, change.size
                if side is Side.BID:
                    levels, key, edge = bids, -price, bid_edge
                elif side is Side.ASK:
                    levels, key, edge = asks, price, ask_edge
                else:
                    raise InvalidMessage(self.instrument_id, sequence, f"unknown side {side!r}")
                if size < 0:
                    raise InvalidMessage(self.instrument_id, sequence, f"negative size {size} at {price}")
                if not stale_checksum and (edge is None or key <= edge):
                    stale_checksum = True
                old = levels.get(key, 0)
                undo.append((levels, key, old))
                if not size:
                    if old:
                        del levels[key]
                elif old:
                    _set_value(levels, key, size)  # the key is already in the sorted index
                else:
                    levels[key] = size
            if bids and asks and -bids.keys()[0] >= asks.keys()[0]:
                raise CrossedBook(self.instrument_id, sequence, -bids.keys()[0], asks.keys()[0])
            if stale_checksum:
                self._checksum = None
            if checksum is not None:
                computed = self.checksum()
                if computed != checksum:
                    raise ChecksumMismatch(self.instrument_id, sequence, checksum, computed)
        except BaseException:
            for levels, key, size in reversed(undo):
                if size:
                    levels[key] = size
                else:
                    levels.pop(key, None)
            self._checksum, self._bid_edge, self._ask_edge = cached_checksum, bid_edge, ask_edge
            raise
        self.sequence = sequence

    def apply_heartbeat(self, sequence: int, checksum: int | None = None) -> None:
        """A heartbeat moves the sequence on and re-states the checksum."""
        self._check_next(sequence)
        if checksum is not None:
            computed = self.checksum()
            if computed != checksum:
                raise ChecksumMismatch(self.instrument_id, sequence, checksum, computed)
        self.sequence = sequence

    def _check_next(self, sequence: int) -> None:
        if self.sequence is None:
            raise InvalidMessage(self.instrument_id, sequence, "no snapshot applied yet")
        if sequence != self.sequence + 1:
            raise SequenceGap(self.instrument_id, self.sequence + 1, sequence)


class DepthView:
    """The top ``depth`` levels per side of a full book, as a subscriber at that depth sees them.

    After each event applied to the full book, ``diff(changes)`` returns the level changes that bring a
    depth-limited copy from the previous view to the new one: levels that changed inside the view, levels
    pushed out (size 0) and levels that moved in. The cost is the event's changes plus the levels that crossed
    the view's edge, not the depth.
    """

    __slots__ = ("_edge", "_view", "book", "depth")

    def __init__(self, book: OrderBook, depth: int) -> None:
        self.book = book
        self.depth = depth
        # Per side, in the book's key space (bids negated, so keys ascend best first on both sides): the view's
        # levels, and the key of its depth-th level (None while the side has fewer levels than the depth).
        self._view: dict[Side, dict[int, int]] = {}
        self._edge: dict[Side, int | None] = {}
        for side, levels in ((Side.BID, book._bids), (Side.ASK, book._asks)):
            keys = levels.keys()[:depth]
            self._view[side] = {k: levels[k] for k in keys}
            self._edge[side] = keys[-1] if len(keys) == depth else None

    def levels(self, side: Side) -> list[Level]:
        """The view's levels of one side, best first."""
        return self.book.top(side, self.depth)

    def diff(self, changes: Iterable[LevelChange]) -> list[LevelChange]:
        """The view's changes caused by an event whose full-book changes were ``changes``."""
        net: dict[Side, dict[int, int]] = {}
        for change in changes:
            net.setdefault(change.side, {})[change.price] = change.size
        out: list[LevelChange] = []
        depth = self.depth
        for side, moved in net.items():
            sign = -1 if side is Side.BID else 1
            levels = self.book._bids if side is Side.BID else self.book._asks
            view = self._view[side]
            old_edge = self._edge[side]
            new_edge: int | None = levels.keys()[depth - 1] if len(levels) >= depth else None
            # Levels the event changed: in the view now, or gone from it.
            for price, size in moved.items():
                key = sign * price
                if size and (new_edge is None or key <= new_edge):
                    if view.get(key) != size:
                        view[key] = size
                        out.append(LevelChange(side, price, size))
                elif key in view:
                    del view[key]
                    out.append(LevelChange(side, price, 0))
            # Unchanged levels that crossed the edge: in when it moved out, out when it moved in.
            if old_edge is not None and (new_edge is None or new_edge > old_edge):
                for key in levels.irange(old_edge, new_edge, inclusive=(False, True)):
                    if key not in view:
                        size = view[key] = levels[key]
                        out.append(LevelChange(side, sign * key, size))
            elif new_edge is not None and (old_edge is None or new_edge < old_edge):
                for key in levels.irange(new_edge, old_edge, inclusive=(False, True)):
                    if key in view:
                        del view[key]
                        out.append(LevelChange(side, sign * key, 0))
            self._edge[side] = new_edge
        return out
