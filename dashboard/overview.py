"""The overview page ``/overview``: every instrument of the feed in one table, refreshed in place.

One row per listed instrument: best bid and ask, spread (price and ticks), last trade, updates per second and
the state (LIVE, STALE, RECONNECTING, ...). One ``ui.timer`` per tab at ``OVERVIEW_HZ`` rebuilds the rows from the
bridge and assigns them only when they changed. A click on a row opens that instrument's book (``/?instrument=ID``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from nicegui import events, ui

from dashboard.bridge import NOT_LIVE_YET, FeedBridge
from dashboard.formatting import Row, format_last_trade
from dashboard.page_parts import assign_rows, header_controls, marked, status_text
from feed_server.client.keeper import ConnectionState
from feed_server.client.sync import InstrumentBook
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.units import SpecFormat, format_spread

__all__ = ["OVERVIEW_COLUMNS", "OVERVIEW_HZ", "OverviewPage", "book_link", "overview_row"]

OVERVIEW_HZ = 4.0  # a glance at many instruments: half the book page's rate is plenty

_NUMBER = "font-mono text-right"
_WIDE = "gt-xs"  # Quasar: shown from 600 px up; a phone gets the "details" column instead
OVERVIEW_COLUMNS: list[dict[str, Any]] = [
    {"name": "instrument", "label": "Instrument", "field": "instrument", "align": "left", "classes": "font-bold"},
    {"name": "bid", "label": "Bid", "field": "bid", "align": "right", "classes": f"{_NUMBER} text-green-8"},
    {"name": "ask", "label": "Ask", "field": "ask", "align": "right", "classes": f"{_NUMBER} text-red-8"},
    *(
        {
            "name": name,
            "label": label,
            "field": name,
            "align": align,
            "classes": f"{classes} {_WIDE}",
            "headerClasses": _WIDE,
        }
        for name, label, align, classes in (
            ("spread", "Spread", "right", _NUMBER),
            ("last", "Last trade", "right", _NUMBER),
            ("rate", "Updates/s", "right", _NUMBER),
            ("state", "State", "left", "font-mono"),
        )
    ),
    # Below 600 px the four columns above fold into this one, a line each (see DETAILS_CELL).
    {
        "name": "details",
        "label": "State, spread, last",
        "field": "state",
        "align": "left",
        "classes": "xs font-mono whitespace-normal text-xs",
        "headerClasses": "xs",
    },
]
# The state as a badge, green while live (text interpolation only, never HTML).
STATE_CELL = (
    '<q-td :props="props">'
    "<q-badge :color=\"props.value === 'LIVE' ? 'green-7' : 'red-7'\" :label=\"props.value\" />"
    "</q-td>"
)
# The phone's details cell: text interpolation only (never HTML).
DETAILS_CELL = (
    '<q-td :props="props">'
    '<div class="font-bold">{{ props.row.state }} · {{ props.row.rate }}/s</div>'
    "<div>{{ props.row.spread }}</div>"
    "<div>{{ props.row.last }}</div>"
    "</q-td>"
)


def book_link(instrument_id: str) -> str:
    """The book page's address for one instrument."""
    return f"/?instrument={quote(instrument_id, safe='')}"


def overview_row(spec: InstrumentSpec, item: InstrumentBook | None, state: ConnectionState, rate: float) -> Row:
    """One instrument's overview row (text cells; "-" where there is nothing to show)."""
    price = SpecFormat.of(spec).price.text
    bid = item.book.best_bid() if item is not None else None
    ask = item.book.best_ask() if item is not None else None
    return {
        "instrument": spec.instrument_id,
        "bid": price(bid[0]) if bid else "-",
        "ask": price(ask[0]) if ask else "-",
        "spread": format_spread(spec, item.book.spread()) if item is not None else "-",
        "last": format_last_trade(spec, item.last_trade) if item is not None else "-",
        "rate": f"{rate:.1f}",
        "state": status_text(state, item),
    }


class OverviewPage:
    """One tab's overview: a table of every instrument, refreshed in place by one timer."""

    def __init__(self, bridge: FeedBridge) -> None:
        self.bridge = bridge
        with ui.column().classes("w-full max-w-screen-xl mx-auto p-2 gap-2"):
            with ui.row().classes("w-full items-center gap-3 flex-wrap"):
                ui.label("Market overview").classes("text-h6")
                header_controls("Book", "/")
            self.reason = marked(ui.label("").classes("text-sm text-amber-9 break-words"), "reason")
            with ui.element("div").classes("w-full"):
                self.table = marked(
                    ui.table(columns=OVERVIEW_COLUMNS, rows=[], row_key="instrument")
                    .props("dense flat bordered")
                    .classes("w-full cursor-pointer"),
                    "overview",
                )
        self.table.add_slot("body-cell-details", DETAILS_CELL)
        self.table.add_slot("body-cell-state", STATE_CELL)
        self.table.on("row-click", self._open_row)
        self.refresh()
        self.timer = ui.timer(1.0 / OVERVIEW_HZ, self.refresh)

    def refresh(self) -> None:
        bridge = self.bridge
        state = bridge.connection_state()
        rows = [
            overview_row(spec, bridge.book(instrument_id), state, bridge.update_rate(instrument_id))
            for instrument_id, spec in bridge.listed().items()
        ]
        assign_rows(self.table, rows)
        waiting = f"{NOT_LIVE_YET} at {bridge.feed_address} to list its instruments"
        reason = bridge.problem() or ("" if rows else waiting)
        if self.reason.text != reason:
            self.reason.text = reason

    def _open_row(self, event: events.GenericEventArguments) -> None:
        """A row click (Quasar's ``row-click`` gives the event, the row and its index): open its book."""
        args = event.args if isinstance(event.args, list) else [event.args]
        for arg in args:
            if isinstance(arg, dict) and isinstance(arg.get("instrument"), str):
                ui.navigate.to(book_link(arg["instrument"]))
                return
