"""The book page's two history charts: the mid price with the trades, and the liquidity heatmap.

:class:`HistoryCharts` builds both ``ui.echart`` elements in the current NiceGUI context and redraws them from
the app's :class:`~dashboard.history.MarketHistory` when the page calls :meth:`HistoryCharts.show` (every tick):
nothing happens while the instrument's history ``version`` is unchanged, and at most one redraw per
``REDRAW_INTERVAL`` otherwise, except that another instrument is drawn at once.

Both charts use category axes and send compact data: x is a column of time (``HH:MM:SS`` UTC labels), y a row of
prices (the exact decimals of the instrument's tick, a row spanning a whole number of ticks), and points are small
integer indices. The series data are tuples, built once per instrument and history version and shared by every
tab (NiceGUI wraps lists, not tuples, into observables, and sends the element's options as they are).
"""

from __future__ import annotations

import logging
import math
import time
from functools import lru_cache
from typing import Any, NamedTuple

from nicegui import ui

from dashboard.history import InstrumentHistory, MarketHistory
from feed_server.protocol.book import Side
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.units import SpecFormat

__all__ = [
    "HEATMAP_COLUMNS",
    "HEATMAP_COLUMN_SECONDS",
    "HEATMAP_REDRAW_INTERVAL",
    "HEATMAP_ROWS",
    "PRICE_COLUMNS",
    "PRICE_ROWS",
    "REDRAW_INTERVAL",
    "HeatmapData",
    "HistoryCharts",
    "PriceData",
    "heatmap_data",
    "price_data",
]

log = logging.getLogger(__name__)

REDRAW_INTERVAL = 0.9  # seconds: a tab redraws its price chart at most about once per second
HEATMAP_REDRAW_INTERVAL = 1.9  # seconds: and its heatmap (the bulk of the data sent) about every two seconds
PRICE_COLUMNS = 300  # one-second columns over the price chart's five minutes
PRICE_ROWS = 100  # at most this many price rows on the price chart
HEATMAP_COLUMN_SECONDS = 2  # seconds per heatmap column (each column shows the last sample in it)
HEATMAP_COLUMNS = 60  # two-second columns over the heatmap's two minutes
HEATMAP_ROWS = 40  # at most this many price rows on the heatmap (at most 2,400 cells)
PRICE_LABELS = 8  # price labels on a y axis, at most
_NS = 1_000_000_000
_EMPTY: tuple[Any, ...] = ()


class PriceData(NamedTuple):
    """The price chart's data: x labels, y labels, the mid per column ('-': none) and the trades per side."""

    times: tuple[str, ...]
    prices: tuple[str, ...]
    mid: tuple[int | str, ...]
    buys: tuple[tuple[int, int, int], ...]  # (column, row, size in lots), one per column, row and side
    sells: tuple[tuple[int, int, int], ...]


class HeatmapData(NamedTuple):
    """The heatmap's data: x labels, y labels, cells (column, row, resting lots), the mid per column, the top."""

    times: tuple[str, ...]
    prices: tuple[str, ...]
    cells: tuple[tuple[int, int, int], ...]
    mid: tuple[int | str, ...]
    max_size: int


@lru_cache(maxsize=1024)
def _time_label(seconds: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


def _grain(spec: InstrumentSpec) -> int:
    """Ticks per order-filter tick: rows are whole multiples of it, so that their labels read at the filter's
    decimals (an exchange's tick is its printed precision, finer than its filter); 1 without a filter."""
    ratio = spec.price_filter / spec.tick_size
    return int(ratio) if ratio == ratio.to_integral_value() and ratio >= 1 else 1


def _rows(low: int, high: int, max_rows: int, grain: int = 1) -> tuple[int, int, int]:
    """Price rows covering ``low..high`` ticks: (first row's price, ticks per row, row count); the ticks per row a
    multiple of ``grain``."""
    step = max(1, math.ceil((high - low + 1) / max_rows))
    step = -(-step // grain) * grain
    while True:  # aligning the first row to the step may need one row more: then wider rows
        base = low - low % step
        count = (high - base) // step + 1
        if count <= max_rows:
            return base, step, count
        step += grain


def _row(price: float, base: int, step: int, count: int) -> int:
    """The row of a price (a mid may fall between ticks), within the chart."""
    return min(count - 1, max(0, round((price - base) / step)))


def _price_labels(history: InstrumentHistory, base: int, step: int, count: int) -> tuple[str, ...]:
    text = SpecFormat.of(history.spec).price.text
    return tuple(text(base + i * step) for i in range(count))


def price_data(history: InstrumentHistory, now_ns: int, columns: int = PRICE_COLUMNS) -> PriceData:
    """The mid and trades of the last ``columns`` seconds up to ``now_ns``, one column per second."""
    last = now_ns // _NS
    first = last - columns + 1
    mids: list[float | None] = [None] * columns
    for t, mid in history.mids:  # oldest first: a column shows its last sample (None: a gap)
        column = t // _NS - first
        if 0 <= column < columns:
            mids[column] = mid
    trades = [(t // _NS - first, p, s, a) for t, p, s, a in history.trades if t // _NS >= first]
    prices = [m for m in mids if m is not None] + [p for _, p, _, _ in trades]
    if not prices:
        return PriceData(tuple(_time_label(first + i) for i in range(columns)), (), ("-",) * columns, (), ())
    base, step, count = _rows(math.floor(min(prices)), math.ceil(max(prices)), PRICE_ROWS, _grain(history.spec))
    mid_rows = tuple("-" if m is None else _row(m, base, step, count) for m in mids)
    sides: tuple[dict[tuple[int, int], int], dict[tuple[int, int], int]] = ({}, {})
    for column, price, size, aggressor in trades:
        if column < columns:
            points = sides[0 if aggressor is Side.BID else 1]
            key = (column, (price - base) // step)
            points[key] = points.get(key, 0) + size
    buys, sells = (tuple((c, r, s) for (c, r), s in points.items()) for points in sides)
    times = tuple(_time_label(first + i) for i in range(columns))
    return PriceData(times, _price_labels(history, base, step, count), mid_rows, buys, sells)


def heatmap_data(
    history: InstrumentHistory,
    now_ns: int,
    columns: int = HEATMAP_COLUMNS,
    column_seconds: int = HEATMAP_COLUMN_SECONDS,
) -> HeatmapData:
    """The resting sizes of the last ``columns`` columns of ``column_seconds`` up to ``now_ns``: each column the last
    sample in it, labelled with its start time."""
    width = column_seconds * _NS
    last = now_ns // width
    first = last - columns + 1
    chosen: dict[int, tuple[float | None, tuple[tuple[int, int], ...]]] = {}
    for sample in history.depth:
        column = sample.time_ns // width - first
        if 0 <= column < columns:
            chosen[column] = (sample.mid, sample.levels)
    times = tuple(_time_label((first + i) * column_seconds) for i in range(columns))
    prices = [p for _, levels in chosen.values() for p, _ in levels]
    if not prices:
        return HeatmapData(times, (), (), ("-",) * columns, 0)
    base, step, count = _rows(min(prices), max(prices), HEATMAP_ROWS, _grain(history.spec))
    cells: dict[tuple[int, int], int] = {}
    mid: list[int | str] = ["-"] * columns
    for column, (column_mid, levels) in chosen.items():
        if column_mid is not None:
            mid[column] = _row(column_mid, base, step, count)
        for price, size in levels:
            key = (column, (price - base) // step)
            cells[key] = cells.get(key, 0) + size
    max_size = max(cells.values(), default=0)
    return HeatmapData(
        times,
        _price_labels(history, base, step, count),
        tuple((c, r, s) for (c, r), s in cells.items()),
        tuple(mid),
        max_size,
    )


class _Built:
    """One instrument's chart data at one history version, each chart's built when first asked for."""

    __slots__ = ("_heatmap", "_price", "item", "now_ns", "version")

    def __init__(self, item: InstrumentHistory) -> None:
        self.item = item
        self.version = item.version
        self.now_ns = item.mids[-1][0] if item.mids else time.time_ns()
        self._price: PriceData | None = None
        self._heatmap: HeatmapData | None = None

    def price(self) -> PriceData:
        if self._price is None:
            self._price = price_data(self.item, self.now_ns)
        return self._price

    def heatmap(self) -> HeatmapData:
        if self._heatmap is None:
            self._heatmap = heatmap_data(self.item, self.now_ns)
        return self._heatmap


# Per history object and instrument: the data of the newest version asked for, shared by every tab.
_built: dict[tuple[int, str], _Built] = {}


def _data_of(history: MarketHistory, instrument_id: str, item: InstrumentHistory) -> _Built:
    key = (id(history), instrument_id)
    built = _built.get(key)
    if built is None or built.version != item.version or built.item is not item:
        built = _built[key] = _Built(item)
    return built


def _axis(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "category",
        "name": name,
        "data": _EMPTY,
        "axisTick": {"alignWithLabel": True},
        "axisLabel": {"hideOverlap": True, "interval": "auto"},
        **extra,
    }


def _price_options() -> dict[str, Any]:
    return {
        "animation": False,
        "grid": {"left": 80, "right": 16, "top": 32, "bottom": 28},
        "legend": {"data": ["Mid", "Buys", "Sells"], "top": 0},
        "tooltip": {"trigger": "item"},
        "xAxis": _axis("UTC", boundaryGap=False),
        "yAxis": _axis("Price", boundaryGap=False),
        "series": [
            {"name": "Mid", "type": "line", "symbol": "none", "color": "#1d4ed8", "data": _EMPTY},
            {
                "name": "Buys",
                "type": "scatter",
                "symbol": "triangle",
                "symbolSize": 8,
                "color": "#15803d",
                "data": _EMPTY,
            },
            {
                "name": "Sells",
                "type": "scatter",
                "symbol": "triangle",
                "symbolRotate": 180,
                "symbolSize": 8,
                "color": "#b91c1c",
                "data": _EMPTY,
            },
        ],
    }


def _heatmap_options() -> dict[str, Any]:
    return {
        "animation": False,
        "grid": {"left": 80, "right": 16, "top": 32, "bottom": 28},
        "tooltip": {"trigger": "item"},
        "xAxis": _axis("UTC"),
        "yAxis": _axis("Price"),
        "visualMap": {
            "type": "continuous",
            "min": 0,
            "max": 1,
            "seriesIndex": 0,
            "calculable": False,
            "orient": "horizontal",
            "right": 16,
            "top": 0,
            "itemHeight": 80,
            "itemWidth": 10,
            "text": ["lots", ""],
            "inRange": {"color": ["#f8fafc", "#93c5fd", "#1d4ed8", "#f59e0b", "#b91c1c"]},
        },
        "series": [
            {"name": "Resting size", "type": "heatmap", "data": _EMPTY, "progressive": 0},
            {
                "name": "Mid",
                "type": "line",
                "symbol": "none",
                "color": "#111827",
                "lineStyle": {"width": 2},
                "data": _EMPTY,
            },
        ],
    }


class HistoryCharts:
    """The price chart and the heatmap of one tab, built in the current NiceGUI context."""

    def __init__(self, history: MarketHistory) -> None:
        self.history = history
        with ui.element("div").classes("w-full grid grid-cols-1 lg:grid-cols-2 gap-2"):
            with ui.card().classes("p-2"):
                ui.label("Mid price and trades, last 5 minutes").classes("text-sm text-grey-8")
                self.price_chart = _marked(ui.echart(_price_options()).classes("w-full h-72"), "price_chart")
            with ui.card().classes("p-2"):
                ui.label("Resting size by price, last 2 minutes").classes("text-sm text-grey-8")
                self.heatmap = _marked(ui.echart(_heatmap_options()).classes("w-full h-72"), "heatmap")
        self._shown: tuple[str | None, int] = (None, -1)  # (instrument, history version) drawn
        self._drawn_at = -math.inf  # when the price chart was last drawn (monotonic seconds)
        self._heatmap_drawn_at = -math.inf

    def show(self, instrument_id: str | None) -> None:
        """Called on every page tick: draw ``instrument_id``'s history when it changed: another instrument at once,
        else the price chart at most once per ``REDRAW_INTERVAL`` and the heatmap per ``HEATMAP_REDRAW_INTERVAL``."""
        item = self.history.get(instrument_id) if instrument_id is not None else None
        version = item.version if item is not None else -1
        shown_id, shown_version = self._shown
        if instrument_id == shown_id and version == shown_version:
            return
        now = time.monotonic()
        switched = instrument_id != shown_id
        if not switched and item is not None and now - self._drawn_at < REDRAW_INTERVAL:
            return
        self._shown = (instrument_id, version)
        self._drawn_at = now
        if instrument_id is None or item is None:
            self._clear()
            return
        built = _data_of(self.history, instrument_id, item)
        self._draw_price(built.price())
        if switched or now - self._heatmap_drawn_at >= HEATMAP_REDRAW_INTERVAL:
            self._heatmap_drawn_at = now
            self._draw_heatmap(built.heatmap())

    def _draw_price(self, data: PriceData) -> None:
        options = self.price_chart.options
        options["xAxis"]["data"] = data.times
        _set_prices(options["yAxis"], data.prices)
        series = options["series"]
        series[0]["data"] = data.mid
        series[1]["data"] = data.buys
        series[2]["data"] = data.sells

    def _draw_heatmap(self, data: HeatmapData) -> None:
        options = self.heatmap.options
        options["xAxis"]["data"] = data.times
        _set_prices(options["yAxis"], data.prices)
        options["visualMap"]["max"] = max(1, data.max_size)
        series = options["series"]
        series[0]["data"] = data.cells
        series[1]["data"] = data.mid

    def _clear(self) -> None:
        self._heatmap_drawn_at = -math.inf
        for chart in (self.price_chart, self.heatmap):
            options = chart.options
            options["xAxis"]["data"] = _EMPTY
            options["yAxis"]["data"] = _EMPTY
            for series in options["series"]:
                series["data"] = _EMPTY


def _set_prices(axis: dict[str, Any], prices: tuple[str, ...]) -> None:
    """The price rows of a y axis, labelled every few rows so that at most ``PRICE_LABELS`` labels show."""
    axis["data"] = prices
    interval = max(0, math.ceil(len(prices) / PRICE_LABELS) - 1)
    if axis["axisLabel"].get("interval") != interval:
        axis["axisLabel"]["interval"] = interval


def _marked(chart: ui.echart, name: str) -> ui.echart:
    """Mark a chart for the simulated user (``marker=name``) and for a browser (``data-testid``)."""
    return chart.mark(name).props(f"data-testid={name}")
