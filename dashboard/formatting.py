"""Pure formatting for the dashboard page: book levels, trades and the depth chart, as display rows.

No NiceGUI and no I/O here: the page module turns an ``InstrumentBook`` into these rows and assigns them
to its elements. Prices and sizes are integer ticks and lots, written exactly to the instrument's tick and lot
size by feed_server/protocol/units.py (``SpecFormat``, also the source of the mid, the spread and a trade's
side), with integer arithmetic: the page formats ~100 numbers per refresh per tab.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import islice

from feed_server.protocol.book import Level, Side, Trade
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.units import SpecFormat, aggressor_name

__all__ = [
    "depth_series",
    "format_last_trade",
    "format_time_ns",
    "instrument_label",
    "level_rows",
    "trade_rows",
]

Row = dict[str, str | int]


def instrument_label(spec: InstrumentSpec) -> str:
    """The dropdown label of an instrument: ``"ID - display name"``."""
    return f"{spec.instrument_id} - {spec.display_name}"


def level_rows(spec: InstrumentSpec, levels: Sequence[Level]) -> list[Row]:
    """Table rows (best first) with the formatted price, size and cumulative size of each level.

    ``key`` is the row's position, so the browser reuses its rows when prices move.
    """
    fmt = SpecFormat.of(spec)
    price_text, size_text = fmt.price.text, fmt.size.text
    rows: list[Row] = []
    cumulative = 0
    for index, (price, size) in enumerate(levels):
        cumulative += size
        rows.append({"key": index, "price": price_text(price), "size": size_text(size), "total": size_text(cumulative)})
    return rows


def depth_series(spec: InstrumentSpec, levels: Sequence[Level], side: Side) -> list[list[float]]:
    """``[price, cumulative size]`` points of one side for the depth chart, in ascending price order."""
    fmt = SpecFormat.of(spec)
    price_number, size_number = fmt.price.number, fmt.size.number
    points: list[list[float]] = []
    cumulative = 0
    for price, size in levels:
        cumulative += size
        points.append([price_number(price), size_number(cumulative)])
    if side is Side.BID:
        points.reverse()  # bids come best (highest) first
    return points


def format_time_ns(time_ns: int) -> str:
    """``HH:MM:SS.mmm`` (UTC) of an event time in nanoseconds since the epoch."""
    seconds, remainder = divmod(time_ns, 1_000_000_000)
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) + f".{remainder // 1_000_000:03d}"


def format_last_trade(spec: InstrumentSpec, trade: Trade | None) -> str:
    """``"7 @ 189.50 BUY"``; "-" before the first trade."""
    if trade is None:
        return "-"
    fmt = SpecFormat.of(spec)
    return f"{fmt.size.text(trade.size)} @ {fmt.price.text(trade.price)} {aggressor_name(trade.aggressor).upper()}"


def trade_rows(spec: InstrumentSpec, trades: Sequence[tuple[int, Trade]], limit: int) -> list[Row]:
    """The newest ``limit`` trades as tape rows, newest first (``trades`` is oldest first); the side in capitals."""
    fmt = SpecFormat.of(spec)
    recent = list(islice(reversed(trades), limit))
    return [
        {
            "key": index,
            "time": format_time_ns(time_ns),
            "price": fmt.price.text(trade.price),
            "size": fmt.size.text(trade.size),
            "side": aggressor_name(trade.aggressor).upper(),
        }
        for index, (time_ns, trade) in enumerate(recent)
    ]
