"""The price-level order book model shared by the server, the CLI client and the dashboard.

Pure and I/O-free: prices are integer ticks and sizes integer lots. A book is driven by snapshots and
updates carrying a sequence number and a checksum; ``apply_*`` refuses a message that skips a sequence
number, leaves the book crossed or does not match its checksum or its book digest, and leaves the book exactly
as it was. The checksum (top 10 levels) and the book digest (every level) are feed_server.protocol.checksum's:
the checksum is kept up to date side by side, the digest change by change, as the book is driven by messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice
from zlib import crc32

from sortedcontainers import SortedDict

from feed_server.protocol.checksum import (
    ASK_TERM,
    BID_TERM,
    CHECKSUM_LEVELS,
    DIGEST_MASK,
    ChainedChecksum,
    book_digest,
)
from feed_server.protocol.errors import ChecksumMismatch, CrossedBook, DigestMismatch, InvalidMessage, SequenceGap
from feed_server.protocol.levels import Level, LevelChange, Side, Trade

MAX_DEPTH = 100
DEFAULT_DEPTH = 20

__all__ = [
    "CHECKSUM_LEVELS",
    "DEFAULT_DEPTH",
    "MAX_DEPTH",
    "Level",
    "LevelChange",
    "OrderBook",
    "Side",
    "Trade",
]

_BID, _ASK = Side.BID, Side.ASK  # module globals: one lookup each, not a global and an attribute, per change
_set_value = dict.__setitem__  # replaces the value of a key a SortedDict already holds, skipping its index


class OrderBook:
    """One instrument's price-level book.

    ``depth`` is the number of levels per side the book is fed with (the subscription's depth); it only
    decides how many levels the checksum covers: ``min(10, depth)``.
    """

    __slots__ = (
        "_asks",
        "_bids",
        "_checksum",
        "_digest",
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
        # Kept side by side: a change at a key at or better than a side's edge marks that side for a rebuild.
        self._checksum = ChainedChecksum(self.checksum_levels)
        self._digest: int | None = None  # the book digest; None until needed (and after unchecked writes)

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
        """The checksum of the book as it is now (see feed_server.protocol.checksum)."""
        return self._checksum.value(self._bids, self._asks)

    def digest(self) -> int:
        """The book digest of every level the book holds (see feed_server.protocol.checksum)."""
        if self._digest is None:
            self._digest = book_digest(self.bids(), self.asks())
        return self._digest

    def key_levels(self, side: Side) -> SortedDict:
        """One side's levels in key space, read only: keys ascend best first (bid keys are negated prices)."""
        return self._bids if side is Side.BID else self._asks

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
        self._digest = None
        checksum = self._checksum
        if side is Side.BID:
            edge = checksum.bid_edge
            if edge is None or -price <= edge:
                checksum.bid_stale = True
            if size:
                self._bids[-price] = size
            else:
                self._bids.pop(-price, None)
        else:
            edge = checksum.ask_edge
            if edge is None or price <= edge:
                checksum.ask_stale = True
            if size:
                self._asks[price] = size
            else:
                self._asks.pop(price, None)

    def clear(self) -> None:
        self._bids.clear()
        self._asks.clear()
        self._checksum.invalidate()
        self._digest = None
        self.sequence = None

    # ----------------------------------------------------------------- writing, checked
    def apply_snapshot(
        self,
        sequence: int,
        bids: Sequence[Level],
        asks: Sequence[Level],
        checksum: int | None = None,
        digest: int | None = None,
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
        new_digest: int | None = None
        if digest is not None:
            new_digest = book_digest(bids, asks)
            if new_digest != digest:
                raise DigestMismatch(self.instrument_id, sequence, digest, new_digest)
        old_bids, old_asks = self._bids, self._asks
        self._bids, self._asks = new_bids, new_asks
        self._checksum.invalidate()
        if checksum is not None:
            computed = self.checksum()
            if computed != checksum:
                self._bids, self._asks = old_bids, old_asks
                self._checksum.invalidate()
                raise ChecksumMismatch(self.instrument_id, sequence, checksum, computed)
        self._digest = new_digest
        self.sequence = sequence

    def apply_update(
        self,
        sequence: int,
        changes: Iterable[LevelChange],
        checksum: int | None = None,
        digest: int | None = None,
    ) -> None:
        """Apply one event's level changes together.

        Raises SequenceGap unless ``sequence`` is the next one, CrossedBook if the result is crossed,
        ChecksumMismatch if it does not match ``checksum``, DigestMismatch if it does not match ``digest``; in
        every case the book is left unchanged.
        """
        self._check_next(sequence)
        bids, asks, tracker, total, crc = self._bids, self._asks, self._checksum, self._digest, crc32
        bid_edge, ask_edge = tracker.bid_edge, tracker.ask_edge
        bid_stale, ask_stale = tracker.bid_stale, tracker.ask_stale
        undo: list[tuple[SortedDict, int, int]] = []
        try:
            for change in changes:
                side, price, size = change.side, change.price, change.size
                if side is _BID:
                    levels, key, term = bids, -price, BID_TERM
                    if not bid_stale and (bid_edge is None or key <= bid_edge):
                        bid_stale = True
                elif side is _ASK:
                    levels, key, term = asks, price, ASK_TERM
                    if not ask_stale and (ask_edge is None or key <= ask_edge):
                        ask_stale = True
                else:
                    raise InvalidMessage(self.instrument_id, sequence, f"unknown side {side!r}")
                if size < 0:
                    raise InvalidMessage(self.instrument_id, sequence, f"negative size {size} at {price}")
                old = levels.get(key, 0)
                undo.append((levels, key, old))
                if total is not None and old != size:  # the digest: the old level's term out, the new one's in
                    if old:
                        total -= crc(term % (price, old))
                    if size:
                        total += crc(term % (price, size))
                if not size:
                    if old:
                        del levels[key]
                elif old:
                    _set_value(levels, key, size)  # the key is already in the sorted index
                else:
                    levels[key] = size
            if bids and asks and -bids.keys()[0] >= asks.keys()[0]:
                raise CrossedBook(self.instrument_id, sequence, -bids.keys()[0], asks.keys()[0])
            tracker.bid_stale, tracker.ask_stale = bid_stale, ask_stale
            if checksum is not None:
                computed = tracker.value(bids, asks)
                if computed != checksum:
                    raise ChecksumMismatch(self.instrument_id, sequence, checksum, computed)
            if total is not None:
                total &= DIGEST_MASK
            if digest is not None:
                if total is None:  # not kept yet: once from the levels, then change by change
                    total = book_digest(self.bids(), self.asks())
                if total != digest:
                    raise DigestMismatch(self.instrument_id, sequence, digest, total)
        except BaseException:
            for levels, key, size in reversed(undo):
                if size:
                    levels[key] = size
                else:
                    levels.pop(key, None)
            tracker.invalidate()  # its parts may hold the refused state
            raise
        self._digest = total
        self.sequence = sequence

    def apply_heartbeat(self, sequence: int, checksum: int | None = None, digest: int | None = None) -> None:
        """A heartbeat moves the sequence on and re-states the checksum and the digest."""
        self._check_next(sequence)
        if checksum is not None:
            computed = self.checksum()
            if computed != checksum:
                raise ChecksumMismatch(self.instrument_id, sequence, checksum, computed)
        if digest is not None:
            computed = self.digest()
            if computed != digest:
                raise DigestMismatch(self.instrument_id, sequence, digest, computed)
        self.sequence = sequence

    def _check_next(self, sequence: int) -> None:
        if self.sequence is None:
            raise InvalidMessage(self.instrument_id, sequence, "no snapshot applied yet")
        if sequence != self.sequence + 1:
            raise SequenceGap(self.instrument_id, self.sequence + 1, sequence)
