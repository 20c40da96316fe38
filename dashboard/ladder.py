"""The book page's ladder: price grouping and size bars, as pure functions (no NiceGUI, no I/O).

Grouping only changes what a tab shows, never the book: levels are integer ticks, and a group of ``g`` ticks
gathers the bids at or above ``floor(price / g) * g`` (rounded down) and the asks at or below
``ceil(price / g) * g`` (rounded up), summing their sizes. A size bar is the level's size as a percentage of the
largest size shown on either side.
"""

from __future__ import annotations

from collections.abc import Sequence

from dashboard.formatting import Row, level_rows
from feed_server.protocol.book import Level, Side
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.units import SpecFormat

__all__ = ["GROUPINGS", "group_levels", "grouping_label", "grouping_options", "ladder_rows", "levels_needed"]

GROUPINGS = (1, 10, 100)  # ticks per shown level


def grouping_label(spec: InstrumentSpec, ticks: int) -> str:
    """A grouping in price units of the instrument: 1, 10 and 100 ticks of 0.01 are "0.01", "0.10", "1.00"."""
    return SpecFormat.of(spec).price.text(ticks)


def grouping_options(spec: InstrumentSpec | None) -> dict[int, str]:
    """The grouping selector's options (ticks -> label); in ticks until the instrument is known."""
    if spec is None:
        return {ticks: f"{ticks} tick{'s' if ticks > 1 else ''}" for ticks in GROUPINGS}
    return {ticks: grouping_label(spec, ticks) for ticks in GROUPINGS}


def levels_needed(rows: int, group: int, available: int) -> int:
    """How many book levels to read to fill ``rows`` grouped rows (at most ``available``)."""
    return min(available, rows * group) if group > 1 else min(available, rows)


def group_levels(levels: Sequence[Level], group: int, side: Side) -> list[Level]:
    """Levels (best first) aggregated by ``group`` ticks: bids rounded down, asks up; best first."""
    if group <= 1:
        return list(levels)
    grouped: list[Level] = []
    for price, size in levels:
        bucket = (price // group) * group if side is Side.BID else -(-price // group) * group
        if grouped and grouped[-1][0] == bucket:
            grouped[-1] = (bucket, grouped[-1][1] + size)
        else:
            grouped.append((bucket, size))
    return grouped


def ladder_rows(spec: InstrumentSpec, levels: Sequence[Level], largest: int) -> list[Row]:
    """``level_rows`` plus ``bar``: the size as a whole percentage (0..100) of ``largest``."""
    rows = level_rows(spec, levels)
    for row, (_, size) in zip(rows, levels, strict=True):
        row["bar"] = (size * 100 + largest - 1) // largest if largest > 0 else 0
    return rows
