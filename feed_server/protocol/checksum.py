"""The feed's book checksum and book digest: the one place that defines and computes them.

::

    checksum = CRC32("<bids>|<asks>")

``<bids>`` is the top ``min(10, depth)`` bid levels, best (highest) first, ``<asks>`` the top ``min(10, depth)``
ask levels, best (lowest) first; each level is ``"<price_ticks>:<size_lots>"`` in base-10 ASCII, levels are
joined by ``","`` and an empty side is the empty string. CRC32 is zlib's (IEEE, unsigned 32-bit). Example: bids
10001x5, 10000x2 and ask 10003x7 give ``CRC32("10001:5,10000:2|10003:7")`` = 2453359248.

CRC32 can be chained: ``crc32(asks, crc32(bids + "|")) == crc32(bids + "|" + asks)``. :class:`ChainedChecksum`
uses that to keep each side's part and redo only the side a change reached; the server's fan-out and every
consumer's :class:`~feed_server.protocol.book.OrderBook` both use it.

The checksum covers the top 10 levels; the book digest covers every level of the book at the subscribed depth::

    book_digest = (sum of CRC32("b<price_ticks>:<size_lots>") over the bids
                   + sum of CRC32("a<price_ticks>:<size_lots>") over the asks) mod 2**32

An empty book gives 0. The sum does not depend on the levels' order, so it is kept up to date with each level
change in O(1): subtract the old level's term, add the new one's (:func:`level_term`). Example: bid 10001x5 and
ask 10003x7 give ``(CRC32("b10001:5") + CRC32("a10003:7")) % 2**32`` = 2474228445.

Both are made of one text per level, :data:`LEVEL_TEXT` (``"<price_ticks>:<size_lots>"``): a digest term is its
CRC32 chained after the side's letter (``crc32(text, BID_SEED) == crc32(b"b" + text)``), so a consumer writes
each changed level once for both.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import TYPE_CHECKING
from zlib import crc32

from feed_server.protocol.levels import Level, LevelChange, Side

if TYPE_CHECKING:
    from sortedcontainers import SortedDict

__all__ = [
    "ASK_SEED",
    "ASK_TERM",
    "BID_SEED",
    "BID_TERM",
    "CHECKSUM_LEVELS",
    "DIGEST_MASK",
    "LEVEL_TEXT",
    "ChainedChecksum",
    "LevelTexts",
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
LEVEL_TEXT = b"%d:%d"  # a level's text in the checksum, %-formatted with (price_ticks, size_lots)
BID_SEED = crc32(b"b")  # crc32(LEVEL_TEXT % level, BID_SEED) == crc32(BID_TERM % level): a bid level's term
ASK_SEED = crc32(b"a")  # the same for an ask level
_BID = Side.BID

LevelTexts = tuple[Mapping[int, bytes], Mapping[int, bytes]]
"""Every level's :data:`LEVEL_TEXT` by key, bids then asks (bid keys are negated prices)."""


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
    by the negated price). Per side it keeps the checksummed levels' keys (``bid_keys``/``ask_keys``, best
    first: they give the best levels too) and their texts. The owner reports every change that reaches them (at
    or better than the side's edge, the key of its last checksummed level: ``bid_edge``/``ask_edge``, ``None``
    while the side has fewer levels or is short of some, when any change counts) in one of two ways:

    - :meth:`edit_bid`/:meth:`edit_ask`, the book's hot path: the change is applied to the kept levels (a
      bisection in a list of ten). A top that loses a level is short of its last one until :meth:`value` reads it
      from the book.
    - ``bid_stale``/``ask_stale`` set directly (or :meth:`note`, the fan-out's, by level change): the side is
      read again from the book by :meth:`value`.

    The texts read from the book come from the owner's ``texts`` when it keeps every level's :data:`LEVEL_TEXT`
    (the book does, for its digest), else they are written from the sizes.
    """

    __slots__ = (
        "_ask_parts",
        "_ask_short",
        "_bid_crc",
        "_bid_parts",
        "_bid_short",
        "_value",
        "ask_edge",
        "ask_keys",
        "ask_stale",
        "bid_edge",
        "bid_keys",
        "bid_stale",
        "levels",
    )

    def __init__(self, levels: int = CHECKSUM_LEVELS) -> None:
        if levels < 1:
            raise ValueError(f"a checksum covers at least 1 level, got {levels}")
        self.levels = levels
        self.bid_keys: list[int] = []  # the checksummed levels' keys, best first
        self.ask_keys: list[int] = []
        self._bid_parts: list[bytes] = []  # and their texts
        self._ask_parts: list[bytes] = []
        self._bid_short = self._ask_short = False  # the keys lack the levels after the last one (one was removed)
        self._bid_crc: int | None = None  # CRC32 of the bid part and the "|"; None: to be computed
        self._value: int | None = None  # None: to be computed
        self.bid_edge: int | None = None
        self.ask_edge: int | None = None
        self.bid_stale = self.ask_stale = True  # to be read from the book

    def invalidate(self) -> None:
        """Forget both sides (the book changed while nobody reported it, or was replaced)."""
        self.bid_stale = self.ask_stale = True

    def note(self, changes: Iterable[LevelChange]) -> None:
        """Report an event's level changes (prices in ticks): a side they reach is read again by value()."""
        bid_edge, ask_edge = self.bid_edge, self.ask_edge
        for side, price, _ in changes:
            if side == _BID:
                if not self.bid_stale and (bid_edge is None or -price <= bid_edge):
                    self.bid_stale = True
            elif not self.ask_stale and (ask_edge is None or price <= ask_edge):
                self.ask_stale = True

    def edit_bid(self, key: int, text: bytes | None) -> None:
        """The bid level at ``key``, at or better than ``bid_edge``, changed (the side not stale): ``text`` is
        its :data:`LEVEL_TEXT` now, None when it was removed."""
        keys, parts, n = self.bid_keys, self._bid_parts, self.levels
        self._bid_crc = self._value = None
        i = bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            if text is not None:
                parts[i] = text
                return  # the same levels: the edge stays
            self._bid_short |= len(keys) == n  # the level after the last is read from the book by value()
            del keys[i], parts[i]
        elif text is not None and (i < len(keys) or not self._bid_short):  # (past a short top: read by value())
            keys.insert(i, key)
            parts.insert(i, text)
            if len(keys) >= n:  # the first n levels: the whole top
                del keys[n:], parts[n:]
                self._bid_short = False
        self.bid_edge = None if self._bid_short or len(keys) < n else keys[-1]

    def edit_ask(self, key: int, text: bytes | None) -> None:
        """The ask level at ``key`` changed; as :meth:`edit_bid`."""
        keys, parts, n = self.ask_keys, self._ask_parts, self.levels
        self._value = None
        i = bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            if text is not None:
                parts[i] = text
                return
            self._ask_short |= len(keys) == n
            del keys[i], parts[i]
        elif text is not None and (i < len(keys) or not self._ask_short):
            keys.insert(i, key)
            parts.insert(i, text)
            if len(keys) >= n:
                del keys[n:], parts[n:]
                self._ask_short = False
        self.ask_edge = None if self._ask_short or len(keys) < n else keys[-1]

    def value(self, bids: SortedDict, asks: SortedDict, texts: LevelTexts | None = None) -> int:
        """The checksum of the book whose sides (in key space) are ``bids`` and ``asks``; ``texts``: the
        :data:`LEVEL_TEXT` of every level of each side (bids, asks) by key, when the owner keeps them."""
        value = self._value
        if value is not None and not (self.bid_stale or self.ask_stale):
            return value
        n = self.levels
        if self.bid_stale or self._bid_short:
            keys, parts = self.bid_keys, self._bid_parts
            have = 0 if self.bid_stale else len(keys)  # a short side's keys are the book's first ones
            keys[have:] = more = list(islice(bids, have, n))  # iterating a SortedDict beats slicing its keys
            if texts is None:
                parts[have:] = [LEVEL_TEXT % (-key, bids[key]) for key in more]
            else:
                parts[have:] = map(texts[0].__getitem__, more)
            self.bid_edge = keys[-1] if len(keys) == n else None
            self.bid_stale = self._bid_short = False
            self._bid_crc = None
        if self.ask_stale or self._ask_short:
            keys, parts = self.ask_keys, self._ask_parts
            have = 0 if self.ask_stale else len(keys)
            keys[have:] = more = list(islice(asks, have, n))
            if texts is None:
                parts[have:] = [LEVEL_TEXT % (key, asks[key]) for key in more]
            else:
                parts[have:] = map(texts[1].__getitem__, more)
            self.ask_edge = keys[-1] if len(keys) == n else None
            self.ask_stale = self._ask_short = False
        bid_crc = self._bid_crc
        if bid_crc is None:
            bid_crc = self._bid_crc = crc32(b"|", crc32(b",".join(self._bid_parts)))
        self._value = value = crc32(b",".join(self._ask_parts), bid_crc)
        return value
