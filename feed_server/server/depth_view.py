"""What a depth-limited subscriber sees of a full book, and how it changes event by event."""

from __future__ import annotations

from collections.abc import Iterable
from zlib import crc32

from feed_server.protocol.book import LevelChange, OrderBook, Side
from feed_server.protocol.checksum import ASK_TERM, BID_TERM, DIGEST_MASK, book_digest

__all__ = ["DepthView"]


class DepthView:
    """The top ``depth`` levels per side of a full book, as a subscriber at that depth sees them.

    After each event applied to the full book, ``diff(changes)`` returns the level changes that bring a
    depth-limited copy from the previous view to the new one: levels that changed inside the view, levels
    pushed out (size 0) and levels that moved in. The cost is the event's changes plus the levels that crossed
    the view's edge, not the depth. ``digest`` is the book digest of the view (what the subscriber must hold),
    kept up to date with each of those changes.
    """

    __slots__ = ("_digest", "_edge", "_view", "book", "depth")

    def __init__(self, book: OrderBook, depth: int) -> None:
        self.book = book
        self.depth = depth
        # Per side, in the book's key space (bids negated, so keys ascend best first on both sides): the view's
        # levels, and the key of its depth-th level (None while the side has fewer levels than the depth).
        self._view: dict[Side, dict[int, int]] = {}
        self._edge: dict[Side, int | None] = {}
        for side in (Side.BID, Side.ASK):
            levels = book.key_levels(side)
            keys = levels.keys()[:depth]
            self._view[side] = {k: levels[k] for k in keys}
            self._edge[side] = keys[-1] if len(keys) == depth else None
        self._digest = book_digest(book.bids(depth), book.asks(depth))

    @property
    def digest(self) -> int:
        """The book digest of the view as it is now (see feed_server.protocol.checksum)."""
        return self._digest

    def diff(self, changes: Iterable[LevelChange]) -> list[LevelChange]:
        """The view's changes caused by an event whose full-book changes were ``changes``."""
        net: dict[Side, dict[int, int]] = {}
        for change in changes:
            net.setdefault(change.side, {})[change.price] = change.size
        out: list[LevelChange] = []
        depth = self.depth
        digest = self._digest
        for side, moved in net.items():
            sign = -1 if side is Side.BID else 1
            term = BID_TERM if side is Side.BID else ASK_TERM
            levels = self.book.key_levels(side)
            view = self._view[side]
            old_edge = self._edge[side]
            new_edge: int | None = levels.keys()[depth - 1] if len(levels) >= depth else None
            # Levels the event changed: in the view now, or gone from it.
            for price, size in moved.items():
                key = sign * price
                if size and (new_edge is None or key <= new_edge):
                    old = view.get(key)
                    if old != size:
                        if old:
                            digest -= crc32(term % (price, old))
                        digest += crc32(term % (price, size))
                        view[key] = size
                        out.append(LevelChange(side, price, size))
                elif key in view:
                    digest -= crc32(term % (price, view.pop(key)))
                    out.append(LevelChange(side, price, 0))
            # Unchanged levels that crossed the edge: in when it moved out, out when it moved in.
            if old_edge is not None and (new_edge is None or new_edge > old_edge):
                for key in levels.irange(old_edge, new_edge, inclusive=(False, True)):
                    if key not in view:
                        size = view[key] = levels[key]
                        digest += crc32(term % (sign * key, size))
                        out.append(LevelChange(side, sign * key, size))
            elif new_edge is not None and (old_edge is None or new_edge < old_edge):
                for key in levels.irange(new_edge, old_edge, inclusive=(False, True)):
                    if key in view:
                        digest -= crc32(term % (sign * key, view.pop(key)))
                        out.append(LevelChange(side, sign * key, 0))
            self._edge[side] = new_edge
        self._digest = digest & DIGEST_MASK
        return out
