"""The book's value types: a side, a price level, a level change and a trade (prices in ticks, sizes in lots)."""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

__all__ = ["Level", "LevelChange", "Side", "Trade"]

Level = tuple[int, int]
"""``(price_ticks, size_lots)``."""


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
