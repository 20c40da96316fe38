"""The feed's book checksum and book digest: the one place that defines and computes them.

::

    checksum = CRC32("<bids>|<asks>")

``<bids>`` is the top ``min(10, depth)`` bid levels, best (highest) first, ``<asks>`` the top ``min(10, depth)``
ask levels, best (lowest) first; each level is ``"<price_ticks>:<size_lots>"`` in base-10 ASCII, levels are
joined by ``","`` and an empty side is the empty string. CRC32 is zlib's (IEEE, unsigned 32-bit). Example: bids
10001x5, 10000x2 and ask 10003x7 give ``CRC32("10001:5,10000:2|10003:7")`` = 2453359248.

CRC32 can be chained: ``crc32(asks, crc32(bids + "|")) == crc32(bids + "|" + asks)``. :class:`ChainedChecksum`
uses that to keep each side's part and rebuild only the side a change reached; the server's fan-out and every
consumer's :class:`~feed_server.protocol.book.OrderBook` both use it.

The checksum covers the top 10 levels; the book digest covers every level of the book at the subscribed depth::

    book_digest = (sum of CRC32("b<price_ticks>:<size_lots>") over the bids
                   + sum of CRC32("a<price_ticks>:<size_lots>") over the asks) mod 2**32

An empty book gives 0. The sum does not depend on the levels' order, so it is kept up to date with each level
change in O(1): subtract the old level's term, add the new one's (:func:`level_term`). Example: bid 10001x5 and
ask 10003x7 give ``(CRC32("b10001:5") + CRC32("a10003:7")) % 2**32`` = 2474228445.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import TYPE_CHECKING
from zlib import crc32

from feed_server.protocol.levels import Level, LevelChange, Side

if TYPE_CHECKING:
    from sortedcontainers import SortedDict

__all__ = [
    "ASK_TERM",
    "BID_TERM",
    "CHECKSUM_LEVELS",
    "DIGEST_MASK",
    "ChainedChecksum",
    "book_digest",
    "checksum_text",
    "compute_checksum",
    "level_term",
    "side_text",
]

CHECKSUM_LEVELS = 10
DIGEST_MASK = 0xFFFF_FFFF
BID_TERM = b"b%d:%d"  # the text of a bid level's digest term, %-formatted with (price_ticks, size_lots)
ASK_TERM = b"a%d:%d"  # the same for an ask level


def level_term(side: Side, price: int, size: int) -> int:
    """One level's term of the book digest: CRC32 of ``"b<price_ticks>:<size_lots>"`` (a bid) or ``"a..."``."""
    return crc32((BID_TERM if side is Side.BID else ASK_TERM) % (price, size))


def book_digest(bids: Iterable[Level], asks: Iterable[Level]) -> int:
    """The book digest of the given levels (every level the book holds; their order does not matter)."""
    total = sum([crc32(BID_TERM % level) for level in bids]) + sum([crc32(ASK_TERM % level) for level in asks])
    return total & DIGEST_MASK


def side_text(sizes: Mapping[int, int], keys: Iterable[int], *, negated: bool = False) -> str:
    """One side's part of the canonical text: ``"<price_ticks>:<size_lots>"`` per level, joined by ``","``.

    The levels are given as a book holds them: ``keys`` in order (best first), ``sizes`` by key; with ``negated``
    the keys are negated prices (a book's bids).
    """
    if negated:
        return ",".join([f"{-key}:{sizes[key]}" for key in keys])
    return ",".join([f"{key}:{sizes[key]}" for key in keys])


def checksum_text(bids: Sequence[Level], asks: Sequence[Level]) -> str:
    """The canonical text ``"<bids>|<asks>"`` of the given levels (best first, already cut to the top 10)."""
    bid_text = side_text(dict(bids), [price for price, _ in bids])
    return bid_text + "|" + side_text(dict(asks), [price for price, _ in asks])


def compute_checksum(bids: Sequence[Level], asks: Sequence[Level]) -> int:
    """CRC32 of the canonical text of the given levels (best first), as an unsigned 32-bit int."""
    return crc32(checksum_text(bids, asks).encode("ascii"))


class ChainedChecksum:
    """The checksum of a book's top ``levels`` levels per side, kept up to date side by side.

    It reads a book in its key space: two ``SortedDict``s whose keys ascend best first on both sides (bids keyed
    by the negated price). The owner reports where the book changed, by key (``bid_stale``/``ask_stale`` set
    directly, the book's hot path) or by level change (:meth:`note`), and :meth:`value` rebuilds only a side
    whose checksummed levels a change reached: at or better than the side's edge, the key of its last
    checksummed level (``None`` while the side has fewer levels, when any change counts).
    """

    __slots__ = ("_ask_bytes", "_bid_crc", "_value", "ask_edge", "ask_stale", "bid_edge", "bid_stale", "levels")

    def __init__(self, levels: int = CHECKSUM_LEVELS) -> None:
        if levels < 1:
            raise ValueError(f"a checksum covers at least 1 level, got {levels}")
        self.levels = levels
        self._value = 0
        self._bid_crc = 0  # CRC32 of the bid part and the "|"
        self._ask_bytes = b""
        self.bid_edge: int | None = None
        self.ask_edge: int | None = None
        self.bid_stale = True
        self.ask_stale = True

    def invalidate(self) -> None:
        """Forget both sides (the book changed while nobody reported it, or was replaced)."""
        self.bid_stale = self.ask_stale = True

    def note(self, changes: Iterable[LevelChange]) -> None:
        """Report an event's level changes (prices in ticks): a side they reach is rebuilt by the next value()."""
        bid_edge, ask_edge, bid = self.bid_edge, self.ask_edge, Side.BID
        for change in changes:
            if change.side is bid:
                if not self.bid_stale and (bid_edge is None or -change.price <= bid_edge):
                    self.bid_stale = True
            elif not self.ask_stale and (ask_edge is None or change.price <= ask_edge):
                self.ask_stale = True

    def value(self, bids: SortedDict, asks: SortedDict) -> int:
        """The checksum of the book whose sides (in key space) are ``bids`` and ``asks``."""
        bid_stale, ask_stale = self.bid_stale, self.ask_stale
        if not (bid_stale or ask_stale):
            return self._value
        n = self.levels
        if bid_stale:
            keys = list(islice(bids, n))  # iterating a SortedDict from the start beats slicing its keys view
            self._bid_crc = crc32((side_text(bids, keys, negated=True) + "|").encode("ascii"))
            self.bid_edge = keys[-1] if len(keys) == n else None
            self.bid_stale = False
        if ask_stale:
            keys = list(islice(asks, n))
            self._ask_bytes = side_text(asks, keys).encode("ascii")
            self.ask_edge = keys[-1] if len(keys) == n else None
            self.ask_stale = False
        self._value = value = crc32(self._ask_bytes, self._bid_crc)
        return value
