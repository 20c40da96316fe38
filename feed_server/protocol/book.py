"""The price-level order book model shared by the server, the CLI client and the dashboard.

Pure and I/O-free: prices are integer ticks and sizes integer lots. A book is driven by snapshots and
updates carrying a sequence number and a checksum; ``apply_*`` refuses a message that skips a sequence
number, leaves the book crossed or does not match its checksum or its book digest, and leaves the book exactly
as it was. The checksum (top 10 levels) and the book digest (every level) are feed_server.protocol.checksum's;
both are kept up to date change by change as the book is driven by messages, from one text per changed level.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice
from operator import attrgetter
from typing import Protocol
from zlib import crc32

from sortedcontainers import SortedDict

from feed_server.protocol.checksum import (
    ASK_SEED,
    BID_SEED,
    CHECKSUM_LEVELS,
    DIGEST_MASK,
    LEVEL_TEXT,
    ChainedChecksum,
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
    "WireChange",
]

_BID, _ASK = Side.BID, Side.ASK  # module globals: one lookup each, not a global and an attribute, per change
_WIRE_FIELDS = attrgetter("side", "price_ticks", "size_lots")  # a WireChange as apply_update takes it


class WireChange(Protocol):
    """A level change as the wire's ``LevelChange`` decodes: the book reads these three fields of it."""

    @property
    def side(self) -> int: ...
    @property
    def price_ticks(self) -> int: ...
    @property
    def size_lots(self) -> int: ...

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
        "_texts",
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
        # Kept change by change: a change at or better than a side's edge edits its checksummed levels.
        self._checksum = ChainedChecksum(self.checksum_levels)
        # The book digest, and every level's LEVEL_TEXT (bids, asks; by key), which gives both its digest term
        # and its part of the checksum: kept change by change by the checked writes; None until needed and after
        # an unchecked write, when the texts are not looked at either.
        self._digest: int | None = None
        self._texts: tuple[dict[int, bytes], dict[int, bytes]] = ({}, {})

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
        return self._checksum.value(self._bids, self._asks, None if self._digest is None else self._texts)

    def digest(self) -> int:
        """The book digest of every level the book holds (see feed_server.protocol.checksum)."""
        digest = self._digest
        if digest is None:
            digest = self._keep_digest()
        return digest

    def _keep_digest(self) -> int:
        """Compute the book digest from every level, keeping each level's text for the changes to come."""
        bid_texts = {key: LEVEL_TEXT % (-key, size) for key, size in dict.items(self._bids)}
        ask_texts = {key: LEVEL_TEXT % (key, size) for key, size in dict.items(self._asks)}
        self._texts = bid_texts, ask_texts
        total = sum([crc32(text, BID_SEED) for text in bid_texts.values()])
        total += sum([crc32(text, ASK_SEED) for text in ask_texts.values()])
        self._digest = digest = total & DIGEST_MASK
        return digest

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
        """Set one level without any check (the simulator's own fast path). Size 0 removes it.

        The checksum is kept change by change (a change that reaches the top levels edits them), so a source
        that publishes after every few changes pays for its checksum per change, never per rebuilt side."""
        self._digest = None
        checksum = self._checksum
        if side is Side.BID:
            key = -price
            edge = checksum.bid_edge
            if (edge is None or key <= edge) and not checksum.bid_stale:
                checksum.edit_bid(key, LEVEL_TEXT % (price, size) if size else None)
            if size:
                self._bids[key] = size
            else:
                self._bids.pop(key, None)
        else:
            edge = checksum.ask_edge
            if (edge is None or price <= edge) and not checksum.ask_stale:
                checksum.edit_ask(price, LEVEL_TEXT % (price, size) if size else None)
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
        old = self._bids, self._asks, self._digest, self._texts
        self._bids, self._asks, self._digest = new_bids, new_asks, None
        self._checksum.invalidate()
        try:
            if digest is not None:
                computed = self._keep_digest()
                if computed != digest:
                    raise DigestMismatch(self.instrument_id, sequence, digest, computed)
            if checksum is not None:
                computed = self.checksum()
                if computed != checksum:
                    raise ChecksumMismatch(self.instrument_id, sequence, checksum, computed)
        except BaseException:
            self._bids, self._asks, self._digest, self._texts = old
            self._checksum.invalidate()
            raise
        self.sequence = sequence

    def apply_update(
        self,
        sequence: int,
        changes: Iterable[tuple[int, int, int]],
        checksum: int | None = None,
        digest: int | None = None,
    ) -> int:
        """Apply one message's level changes together; return how many levels they changed.

        ``changes`` are ``(side, price, size)`` triples: ``LevelChange``s, or plain tuples with the wire's side
        numbers (1 bid, 2 ask, as ``Side``'s values), applied in order. Raises SequenceGap unless ``sequence`` is
        the next one, InvalidMessage for an unknown side or a negative size, CrossedBook if the result is crossed,
        ChecksumMismatch if it does not match ``checksum``, DigestMismatch if it does not match ``digest``; in
        every case the book is left unchanged.
        """
        previous = self.sequence
        if previous is None or sequence != previous + 1:
            self._check_next(sequence)
        bids, asks, tracker = self._bids, self._asks, self._checksum
        kept = self._digest is not None  # the digest and the levels' texts, kept change by change
        total = self._digest or 0
        bid_texts, ask_texts = self._texts
        # Per side: its levels, their texts, its digest terms' seed, and its checksummed levels' edge as the
        # message found it with their editor: a change at or better than the edge edits them.
        bid_side = bids, bid_texts, BID_SEED, tracker.bid_edge, None if tracker.bid_stale else tracker.edit_bid
        ask_side = asks, ask_texts, ASK_SEED, tracker.ask_edge, None if tracker.ask_stale else tracker.edit_ask
        undo: list[tuple[SortedDict, int, int]] = []
        try:
            for side, price, size in changes:
                if side == _BID:
                    levels, texts, seed, edge, edit = bid_side
                    key = -price
                elif side == _ASK:
                    levels, texts, seed, edge, edit = ask_side
                    key = price
                else:
                    raise InvalidMessage(self.instrument_id, sequence, f"unknown side {side!r}")
                old = levels.get(key, 0)
                if old == size:
                    continue
                if size < 0:
                    raise InvalidMessage(self.instrument_id, sequence, f"negative size {size} at {price}")
                undo.append((levels, key, old))
                text: bytes | None
                if size:
                    text = LEVEL_TEXT % (price, size)  # its digest term's text and its part of the checksum
                    if kept:  # the digest: the old level's term out, the new one's in
                        total += crc32(text, seed) - crc32(texts[key], seed) if old else crc32(text, seed)
                        texts[key] = text
                    if old:
                        _set_value(levels, key, size)  # the key is already in the sorted index
                    else:
                        levels[key] = size
                else:
                    text = None
                    if kept:
                        total -= crc32(texts.pop(key), seed)
                    del levels[key]
                if edit is not None and (edge is None or key <= edge):
                    edit(key, text)
            computed = tracker.value(bids, asks, self._texts if kept else None)
            best_bids, best_asks = tracker.bid_keys, tracker.ask_keys  # (brought up to date by value())
            if best_bids and best_asks and -best_bids[0] >= best_asks[0]:
                raise CrossedBook(self.instrument_id, sequence, -best_bids[0], best_asks[0])
            if checksum is not None and computed != checksum:
                raise ChecksumMismatch(self.instrument_id, sequence, checksum, computed)
            if kept:
                total &= DIGEST_MASK
            elif digest is not None:  # not kept yet: once from the levels, then change by change
                total = self._keep_digest()
                kept = True
            if digest is not None and total != digest:
                raise DigestMismatch(self.instrument_id, sequence, digest, total)
        except BaseException:
            for levels, key, size in reversed(undo):
                if size:
                    levels[key] = size
                else:
                    levels.pop(key, None)
            tracker.invalidate()  # its parts may hold the refused state
            self._digest = None  # and the levels' texts too
            raise
        if kept:
            self._digest = total
        self.sequence = sequence
        return len(undo)

    def apply_wire_update(
        self,
        sequence: int,
        changes: Iterable[WireChange],
        checksum: int | None = None,
        digest: int | None = None,
    ) -> int:
        """:meth:`apply_update` for the wire's level changes as decoded (``side``, ``price_ticks``, ``size_lots``)."""
        return self.apply_update(sequence, map(_WIRE_FIELDS, changes), checksum, digest)

    def apply_heartbeat(self, sequence: int, checksum: int | None = None, digest: int | None = None) -> None:
        """A heartbeat moves the sequence on and re-states the checksum and the digest."""
        previous = self.sequence
        if previous is None or sequence != previous + 1:
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
