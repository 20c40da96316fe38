"""The depth view: what a depth-limited subscriber sees of the full book."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from feed_server.protocol.book import LevelChange, OrderBook, Side
from feed_server.protocol.checksum import book_digest, compute_checksum
from feed_server.server.depth_view import DepthView

levels = st.dictionaries(st.integers(1, 60), st.integers(0, 20), max_size=30)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(levels, levels), min_size=1, max_size=30), st.integers(1, 25))
def test_depth_view_diffs_rebuild_the_top_of_any_book(
    events: list[tuple[dict[int, int], dict[int, int]]], depth: int
) -> None:
    """Applying a DepthView's diffs to a depth-limited copy always gives the full book's top levels."""
    full = OrderBook("T", 100)
    full.apply_snapshot(0, [], [])
    view = DepthView(full, depth)
    copy = OrderBook("T", depth)
    copy.apply_snapshot(0, [], [])
    for seq, (bid_moves, ask_moves) in enumerate(events, start=1):
        # Bids live on 1..60 and asks on 61..120 so that no event crosses the book.
        changes = [LevelChange(Side.BID, p, s) for p, s in bid_moves.items()]
        changes += [LevelChange(Side.ASK, p + 60, s) for p, s in ask_moves.items()]
        full.apply_update(seq, changes)
        copy.apply_update(seq, view.diff(changes), full.checksum() if depth >= 10 else None, view.digest)
        assert view.digest == book_digest(full.bids(depth), full.asks(depth))
        assert copy.bids() == full.bids(depth)
        assert copy.asks() == full.asks(depth)
        assert copy.checksum() == compute_checksum(full.bids(min(depth, 10)), full.asks(min(depth, 10)))
