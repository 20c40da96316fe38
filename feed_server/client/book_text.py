"""Text renderings of a subscriber's book for the CLI: a top-of-book table and a one-line summary.

Pure functions of an InstrumentBook; prices, sizes, the mid, the spread and a trade's side are written by
feed_server/protocol/units.py, exactly to the instrument's tick and lot size.
"""

from __future__ import annotations

from feed_server.client.sync import InstrumentBook
from feed_server.protocol.book import Trade
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.units import SpecFormat, aggressor_name, format_mid, format_spread

__all__ = ["format_instrument", "format_trade", "render_table", "summary_line"]


def format_trade(spec: InstrumentSpec, trade: Trade) -> str:
    """``"1.0 @ 100.25 (buy)"``: size, price and the side of the incoming order."""
    fmt = SpecFormat.of(spec)
    return f"{fmt.size.text(trade.size)} @ {fmt.price.text(trade.price)} ({aggressor_name(trade.aggressor)})"


def _status(entry: InstrumentBook) -> str:
    return "STALE" if entry.stale else "checksum ok"


def _header_status(entry: InstrumentBook) -> str:
    """``checksum ok``, ``STALE`` or ``STALE: <why>``."""
    if entry.stale and entry.stale_reason:
        return f"STALE: {entry.stale_reason}"
    return _status(entry)


def _spread_and_mid(entry: InstrumentBook) -> tuple[str, str]:
    spec, book = entry.spec, entry.book
    bid, ask = book.best_bid(), book.best_ask()
    if bid is None or ask is None:
        return "-", "-"
    return format_spread(spec, ask[0] - bid[0]), format_mid(spec, bid[0], ask[0])


def summary_line(entry: InstrumentBook) -> str:
    """One line: sequence, best bid and ask, spread, mid, last trade, and checksum ok or STALE."""
    spec, book = entry.spec, entry.book
    fmt = SpecFormat.of(spec)
    price, size = fmt.price.text, fmt.size.text
    bid, ask = book.best_bid(), book.best_ask()
    bid_text = f"{size(bid[1])} @ {price(bid[0])}" if bid else "-"
    ask_text = f"{size(ask[1])} @ {price(ask[0])}" if ask else "-"
    spread, mid = _spread_and_mid(entry)
    last = format_trade(spec, entry.last_trade) if entry.last_trade else "-"
    return (
        f"{spec.instrument_id} seq={book.sequence} bid={bid_text} ask={ask_text} "
        f"spread={spread.split(' ')[0]} mid={mid} last={last} {_status(entry).replace(' ', '=')}"
    )


def render_table(entry: InstrumentBook, rows: int) -> list[str]:
    """The top ``rows`` levels, bids and asks side by side, under a header with the book's figures and status
    (``[checksum ok]``, or ``[STALE: <why>]``)."""
    spec, book = entry.spec, entry.book
    fmt = SpecFormat.of(spec)
    price, size = fmt.price.text, fmt.size.text
    bids, asks = book.bids(rows), book.asks(rows)
    spread, mid = _spread_and_mid(entry)
    last = format_trade(spec, entry.last_trade) if entry.last_trade else "-"
    cells = [(size(s), price(p)) for p, s in bids], [(price(p), size(s)) for p, s in asks]
    width = max([10, *(len(text) for side in cells for pair in side for text in pair)])
    lines = [
        f"{spec.instrument_id}  {spec.display_name}  seq {book.sequence}  [{_header_status(entry)}]",
        f"spread {spread}  mid {mid}  last {last}",
        "",
        f"{'BID SIZE':>{width}} {'BID':>{width}} | {'ASK':<{width}} {'ASK SIZE'}",
    ]
    for i in range(max(len(bids), len(asks), 1)):
        left = f"{cells[0][i][0]:>{width}} {cells[0][i][1]:>{width}}" if i < len(bids) else " " * (2 * width + 1)
        right = f"{cells[1][i][0]:<{width}} {cells[1][i][1]:<{width}}" if i < len(asks) else ""
        lines.append(f"{left} | {right}".rstrip())
    return lines


def format_instrument(spec: InstrumentSpec) -> str:
    """One --list line: id first, then name, kind, tick and lot size (and the order filters where they differ)."""
    line = f"{spec.instrument_id:<10} {spec.display_name:<28} {spec.kind:<8} "
    line += f"tick {spec.tick_size:f}  lot {spec.lot_size:f}"
    if (spec.price_filter, spec.size_filter) != (spec.tick_size, spec.lot_size):
        line += f"  (orders: tick {spec.price_filter:f}, lot {spec.size_filter:f})"
    return line
