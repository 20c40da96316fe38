"""The dashboard page ``/``: one instrument's live book, depth chart and trade tape per browser tab.

The page never touches gRPC: it reads the bridge's books (rebuilt by the one subscriber task) and updates
its elements in place from one ``ui.timer`` per tab at ``REFRESH_HZ``. A tick costs next to nothing when the
tab's book has not changed (its ``version`` is the same): only the status, the reason banner and the update rate
are looked at. Whenever the tab's instrument is not live a banner under the header says why, in one line: the
subscriber's problem (the feed unreachable, or refusing the dashboard) first, else the book's own stale reason.
The dropdown follows the feed's instrument list: a restarted feed's new instruments appear, the ones it dropped
disappear (a tab showing one is emptied and says so in the banner until another instrument is picked, or the feed
lists it again). Everything from the feed is shown as text (labels, table cells, select options), never as HTML.

Links: ``/?instrument=ID`` opens that instrument (an id the feed does not list is notified and the first
instrument shown; before the feed has listed its instruments the link waits for the list), and picking another
instrument replaces the address (``ui.navigate.history.replace``: no reload), so a reload or a bookmark keeps it.
The ladder: each size has a bar behind it (relative to the largest size shown on either side), and a per-tab
grouping (1, 10 or 100 ticks) aggregates the levels shown, never the book (see dashboard/ladder.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from nicegui import app, ui

from dashboard.bridge import NOT_LIVE_YET, FeedBridge
from dashboard.charts import HistoryCharts
from dashboard.formatting import depth_series, format_last_trade, instrument_label, trade_rows
from dashboard.history import MarketHistory
from dashboard.ladder import group_levels, grouping_label, grouping_options, ladder_rows, levels_needed
from dashboard.overview import OverviewPage, book_link
from dashboard.page_parts import STATUS_CLASSES, assign_rows, header_controls, marked, status_text
from dashboard.parts import parts_of
from feed_server.client.sync import InstrumentBook
from feed_server.protocol.book import MAX_DEPTH, Side, Trade
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.units import format_mid, format_spread

__all__ = [
    "BOOK_LEVELS",
    "DEPTH_CHART_LEVELS",
    "REFRESH_HZ",
    "TAPE_TRADES",
    "BookPage",
    "register_pages",
    "status_text",
]

logger = logging.getLogger(__name__)

REFRESH_HZ = 8.0
BOOK_LEVELS = 15
DEPTH_CHART_LEVELS = 30
TAPE_TRADES = 15
# How long a tab whose socket dropped keeps its state on the server (NiceGUI's default is 3 s). A busy
# browser (many tabs, a phone in the background) can miss a ping for a few seconds; within this time it
# reconnects to the same page instead of reloading it.
RECONNECT_TIMEOUT = 10.0

STALE_CLASSES = "opacity-40 grayscale"
BANNER_CLASSES = "w-full items-center gap-2 px-3 py-2 rounded bg-amber-1 text-amber-10 border border-amber-5"

_NUMBER = "font-mono text-right"


def level_columns(price_color: str) -> list[dict[str, Any]]:
    return [
        {"name": "price", "label": "Price", "field": "price", "align": "right", "classes": f"{_NUMBER} {price_color}"},
        {"name": "size", "label": "Size", "field": "size", "align": "right", "classes": _NUMBER},
        {"name": "total", "label": "Cumulative", "field": "total", "align": "right", "classes": _NUMBER},
    ]


def size_cell_template(bar_color: str) -> str:
    """The size cell: the number (text, never HTML) over a bar as wide as the row's ``bar`` percentage."""
    return (
        '<q-td :props="props" class="relative-position">'
        f'<div class="absolute-top-right full-height opacity-30 {bar_color}" data-testid="size_bar"'
        " :style=\"{ width: props.row.bar + '%' }\"></div>"
        '<span class="relative-position">{{ props.value }}</span>'
        "</q-td>"
    )


TRADE_COLUMNS: list[dict[str, Any]] = [
    {"name": "time", "label": "Time (UTC)", "field": "time", "align": "left", "classes": "font-mono"},
    {"name": "price", "label": "Price", "field": "price", "align": "right", "classes": _NUMBER},
    {"name": "size", "label": "Size", "field": "size", "align": "right", "classes": _NUMBER},
    {"name": "side", "label": "Side", "field": "side", "align": "left", "classes": "font-mono"},
]


def register_pages() -> None:
    """Define the pages ``/`` and ``/overview`` on NiceGUI's app (called once by dashboard/main.py).

    Each page reads the app's parts (``parts_of(app)``, stored by dashboard/main.py) when a tab opens it."""

    @ui.page("/", title="Market data", reconnect_timeout=RECONNECT_TIMEOUT)
    def index(instrument: str | None = None) -> None:
        parts = parts_of(app)
        BookPage(parts.bridge, parts.history, instrument)

    @ui.page("/overview", title="Market overview", reconnect_timeout=RECONNECT_TIMEOUT)
    def overview() -> None:
        OverviewPage(parts_of(app).bridge)


def reason_text(bridge: FeedBridge, instrument_id: str | None, book: InstrumentBook | None, status: str) -> str | None:
    """The banner's line: why the tab's instrument is not live, or None when it is (``status`` is "LIVE")."""
    if status == "LIVE" and book is not None:
        return None
    problem = bridge.problem()
    if problem:
        return problem
    if book is not None:
        return bridge.reason(book) or f"the feed connection is {status.lower()}"
    if not bridge.listed():
        return f"{NOT_LIVE_YET} at {bridge.feed_address} to list its instruments"
    if instrument_id is not None and bridge.is_gone(instrument_id):
        return f"the feed no longer lists {instrument_id}: choose another instrument"
    return "choose an instrument"


def _depth_chart_options() -> dict[str, Any]:
    series_common: dict[str, Any] = {"type": "line", "symbol": "none", "animation": False, "data": []}
    return {
        "animation": False,
        "grid": {"left": 60, "right": 16, "top": 28, "bottom": 28},
        "legend": {"data": ["Bids", "Asks"], "top": 0},
        "tooltip": {"trigger": "axis"},
        "xAxis": {"type": "value", "scale": True, "name": "Price"},
        "yAxis": {"type": "value", "name": "Size"},
        "series": [
            {**series_common, "name": "Bids", "step": "start", "color": "#15803d", "areaStyle": {"opacity": 0.25}},
            {**series_common, "name": "Asks", "step": "end", "color": "#b91c1c", "areaStyle": {"opacity": 0.25}},
        ],
    }


class BookPage:
    """One tab's view: its own instrument choice, grouping and elements, refreshed in place by one timer."""

    def __init__(self, bridge: FeedBridge, history: MarketHistory, requested: str | None = None) -> None:
        self.bridge = bridge
        self.history = history
        specs = bridge.instruments()
        # A link's instrument waits for the feed's list to be confirmed (or refuted, see _resolve_link).
        self._requested = requested
        # The tab's instrument: the link's, else the first one listed, then the user's choice (kept while the feed
        # does not list it).
        self.instrument_id: str | None = requested or (specs[0].instrument_id if specs else None)
        self.group = 1  # ticks per shown level (1: the book's own levels)
        # What the elements show now; a tick with the same key skips the book work.
        self._shown_key: tuple[str | None, int, int, int] | None = None
        self._shown_stale: bool | None = None
        self._shown_status = "CONNECTING"
        self._shown_reason: str | None = ""
        self._shown_trade: tuple[int, Trade] | None = None
        self._grouping_spec: InstrumentSpec | None = None  # the instrument the grouping labels are in
        self._listed: Mapping[str, InstrumentSpec] | None = None  # the feed's list the dropdown was built from
        self._build(specs)
        self.refresh()
        self.timer = ui.timer(1.0 / REFRESH_HZ, self.refresh)

    # ----------------------------------------------------------------- layout
    def _build(self, specs: list[InstrumentSpec]) -> None:
        with ui.column().classes("w-full max-w-screen-xl mx-auto p-2 gap-2"):
            with ui.row().classes("w-full items-center gap-3 flex-wrap"):
                ui.label("Market data").classes("text-h6")
                self.select = marked(
                    ui.select(
                        {spec.instrument_id: instrument_label(spec) for spec in specs},
                        value=self.instrument_id if any(s.instrument_id == self.instrument_id for s in specs) else None,
                        label="Instrument",
                        on_change=lambda e: self._on_pick(e.value),
                    )
                    .classes("min-w-[16rem] grow sm:grow-0")
                    .props("dense outlined"),
                    "instrument",
                )
                self.grouping = marked(
                    ui.select(
                        grouping_options(None), value=1, label="Group", on_change=lambda e: self.set_group(e.value)
                    )
                    .classes("w-28")
                    .props("dense outlined"),
                    "grouping",
                )
                self.status = marked(
                    ui.label("CONNECTING")
                    .classes("px-3 py-1 rounded text-white font-bold tracking-wide")
                    .classes(STATUS_CLASSES["CONNECTING"]),
                    "status",
                )
                header_controls("Overview", "/overview")
            # What the feed plays: its simulation, or a replay and its speed.
            self.source = marked(ui.label("").classes("text-sm text-grey-7 break-words"), "source")
            # Why the instrument is not live; hidden while it is (see _set_reason). Plain text, never HTML.
            self.banner = marked(ui.row().classes(BANNER_CLASSES), "banner")
            with self.banner:
                ui.icon("warning").classes("text-amber-8")
                self.reason = marked(ui.label("").classes("break-words"), "reason")
            # Everything below the header is greyed out while the book is not live (see _set_status).
            self.data_area = marked(ui.column().classes("w-full gap-2"), "book_area")
            with self.data_area:
                with ui.row().classes("w-full gap-x-6 gap-y-1 flex-wrap text-sm items-baseline"):
                    self.sequence = self._stat("Sequence", "sequence")
                    self.spread = self._stat("Spread", "spread")
                    self.mid = self._stat("Mid", "mid")
                    self.last_trade = self._stat("Last trade", "last_trade")
                    self.rate = self._stat("Updates/s", "rate")
                    self.checksum = self._stat("Checksum", "checksum")
                with ui.element("div").classes("w-full grid grid-cols-1 md:grid-cols-2 gap-2"):
                    self.bids = self._levels_table("Bids", "bids", "text-green-9", "bg-green-5")
                    self.asks = self._levels_table("Asks", "asks", "text-red-9", "bg-red-5")
                with ui.element("div").classes("w-full grid grid-cols-1 lg:grid-cols-3 gap-2 items-start"):
                    with ui.card().classes("lg:col-span-2 p-2 min-w-0"):
                        chart = ui.echart(_depth_chart_options()).classes("w-full h-64")
                        self.depth_chart = marked(chart, "depth_chart")
                    self.trades = marked(
                        ui.table(columns=TRADE_COLUMNS, rows=[], row_key="key", title="Trades")
                        .props("dense flat bordered")
                        .classes("w-full min-w-0"),
                        "trades",
                    )
                # The mid price and trades over time, and the heatmap (dashboard/charts.py), full width.
                self.history_charts = HistoryCharts(self.history)

    @staticmethod
    def _stat(title: str, marker: str) -> ui.label:
        with ui.row().classes("gap-1 items-baseline no-wrap"):
            ui.label(title).classes("text-grey-7")
            return marked(ui.label("-").classes("font-mono break-all"), marker)

    @staticmethod
    def _levels_table(title: str, marker: str, price_color: str, bar_color: str) -> ui.table:
        table = marked(
            ui.table(columns=level_columns(price_color), rows=[], row_key="key", title=title)
            .props("dense flat bordered")
            .classes("w-full min-w-0"),
            marker,
        )
        table.add_slot("body-cell-size", size_cell_template(bar_color))
        return table

    # ----------------------------------------------------------------- choices
    def _on_pick(self, instrument_id: str | None) -> None:
        """The dropdown's choice: show it, and put it in the address (no reload) for reloads and bookmarks."""
        if instrument_id is None or instrument_id == self.instrument_id:
            return
        self._requested = None
        self.show_instrument(instrument_id)
        ui.navigate.history.replace(book_link(instrument_id))

    def show_instrument(self, instrument_id: str | None) -> None:
        """Switch this tab to another instrument and show its book at once (None, from a dropdown whose
        instrument the feed no longer lists, keeps the tab's choice)."""
        if instrument_id is None or instrument_id == self.instrument_id:
            return
        self.instrument_id = instrument_id
        self._shown_key = None
        self.refresh()

    def set_group(self, ticks: int | None) -> None:
        """Show levels grouped by ``ticks`` ticks (1: ungrouped); the book itself is not touched."""
        if ticks is None or ticks == self.group:
            return
        self.group = int(ticks)
        self._shown_key = None
        self.refresh()

    def _resolve_link(self, listed: Mapping[str, InstrumentSpec]) -> None:
        """The feed's first list decides a link's instrument: kept when listed, else notified and the first shown."""
        requested, self._requested = self._requested, None
        if requested is None or requested in listed:
            return
        first = next(iter(listed))
        ui.notify(f"Unknown instrument {requested[:40]!r}: showing {first}", type="warning")
        self.instrument_id = first
        self._shown_key = None
        ui.navigate.history.replace(book_link(first))

    # ----------------------------------------------------------------- updates
    def refresh(self) -> None:
        """One tick: the dropdown's list, status, reason and rate always; the book, chart and tape only when the
        book changed."""
        bridge = self.bridge
        listed = bridge.listed()
        if listed is not self._listed:
            self._follow_instruments(listed)
        instrument_id = self.instrument_id
        self.history_charts.show(instrument_id)  # every tick: it redraws only when the history changed
        book = bridge.book(instrument_id) if instrument_id is not None else None
        status = status_text(bridge.connection_state(), book)
        self._set_status(status)
        self._set_reason(reason_text(bridge, instrument_id, book, status))
        self.rate.text = f"{bridge.update_rate(instrument_id):.1f}" if instrument_id is not None else "-"
        source = bridge.source()
        self.source.text = f"Source: {source}" if source else ""
        key = (instrument_id, id(book), book.version if book is not None else -1, self.group)
        if key == self._shown_key:
            return
        self._shown_key = key
        if book is None:
            self._clear()
            return
        self._show_book(book)

    def _follow_instruments(self, listed: Mapping[str, InstrumentSpec]) -> None:
        """Make the dropdown the feed's list (the subscriber replaces the list on each connection).

        The first list picks the tab's instrument if it had none (or settles a link's). An instrument the feed no
        longer lists leaves the dropdown empty (the tab keeps its choice, the banner says why) until the feed lists
        it again."""
        self._listed = listed
        if not listed:
            return  # not listed yet (or no answer yet from a restarted feed): keep what is shown
        if self._requested is not None:
            self._resolve_link(listed)
        if self.instrument_id is None:
            self.instrument_id = next(iter(listed))
        options = {spec.instrument_id: instrument_label(spec) for spec in listed.values()}
        value = self.instrument_id if self.instrument_id in options else None
        if options != self.select.options or value != self.select.value:
            self.select.set_options(options, value=value)

    def _set_status(self, text: str) -> None:
        if text != self._shown_status:
            self.status.classes(remove=STATUS_CLASSES.get(self._shown_status, ""), add=STATUS_CLASSES[text])
            self.status.text = text
            self._shown_status = text
        stale = text != "LIVE"
        if stale != self._shown_stale:
            if stale:
                self.data_area.classes(add=STALE_CLASSES)
            else:
                self.data_area.classes(remove=STALE_CLASSES)
            self._shown_stale = stale

    def _set_reason(self, reason: str | None) -> None:
        if reason != self._shown_reason:
            if reason is not None:
                self.reason.text = reason
            self.banner.set_visibility(reason is not None)
            self._shown_reason = reason

    def _show_book(self, item: InstrumentBook) -> None:
        spec, book, group = item.spec, item.book, self.group
        if spec is not self._grouping_spec:
            self._grouping_spec = spec
            self.grouping.set_options(grouping_options(spec), value=group)
        depth = max(DEPTH_CHART_LEVELS, levels_needed(BOOK_LEVELS, group, MAX_DEPTH))
        bids, asks = book.bids(depth), book.asks(depth)
        shown_bids = group_levels(bids, group, Side.BID)[:BOOK_LEVELS]
        shown_asks = group_levels(asks, group, Side.ASK)[:BOOK_LEVELS]
        largest = max((size for _, size in (*shown_bids, *shown_asks)), default=0)
        assign_rows(self.bids, ladder_rows(spec, shown_bids, largest))
        assign_rows(self.asks, ladder_rows(spec, shown_asks, largest))
        series = self.depth_chart.options["series"]
        bid_levels, ask_levels = bids[:DEPTH_CHART_LEVELS], asks[:DEPTH_CHART_LEVELS]
        bid_points, ask_points = depth_series(spec, bid_levels, Side.BID), depth_series(spec, ask_levels, Side.ASK)
        if series[0]["data"] != bid_points or series[1]["data"] != ask_points:  # else the chart is not re-sent
            series[0]["data"] = bid_points
            series[1]["data"] = ask_points
        newest = item.trades[-1] if item.trades else None
        if newest is not self._shown_trade or not newest:  # the tape only changes with a new trade
            self._shown_trade = newest
            assign_rows(self.trades, trade_rows(spec, item.trades, TAPE_TRADES))
        best_bid = bids[0][0] if bids else None
        best_ask = asks[0][0] if asks else None
        self.sequence.text = str(book.sequence) if book.sequence is not None else "-"
        checksum = str(book.checksum())
        if group > 1:
            checksum += f" (book; levels shown grouped by {grouping_label(spec, group)})"
        self.checksum.text = checksum
        self.spread.text = format_spread(spec, book.spread())
        self.mid.text = format_mid(spec, best_bid, best_ask)
        self.last_trade.text = format_last_trade(spec, item.last_trade)

    def _clear(self) -> None:
        for table in (self.bids, self.asks, self.trades):
            assign_rows(table, [])
        for series in self.depth_chart.options["series"]:
            series["data"] = []
        for label in (self.sequence, self.checksum, self.spread, self.mid, self.last_trade):
            label.text = "-"
