"""The history charts in a real browser: headless Debian Chromium (Playwright) against ``python run.py``.

Needs the page to show dashboard.charts.HistoryCharts (dashboard/pages.py). Within 5 s of opening ``/`` the price
chart holds mid prices and the heatmap resting sizes, read from the ECharts instances themselves (not just a
canvas); a tab opened later shows the history gathered before it at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page

from tests.dashboard.page_fixtures import CHROMIUM, REPO, chromium, running_dashboard, watched_tab
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (CI installs chromium)")

ARTIFACTS = REPO / "artifacts"

# The chart's series lengths and axis labels, from the ECharts instance NiceGUI keeps on the element's component.
SERIES_JS = """(testid) => {
    const el = document.querySelector(`[data-testid=${testid}]`);
    const chart = el && getElement(el) && getElement(el).chart;
    if (!chart) return null;
    const option = chart.getOption();
    const count = (data) => (data || []).filter((v) => v !== '-' && v !== null).length;
    return {series: option.series.map((s) => count(s.data)), x: option.xAxis[0].data, y: option.yAxis[0].data};
}"""


@pytest.fixture(scope="module")
def dashboard_url() -> Iterator[str]:
    with running_dashboard("--rate", "100") as url:
        yield url


def chart_state(page: Page, testid: str) -> dict[str, Any] | None:
    state: dict[str, Any] | None = page.evaluate(SERIES_JS, testid)
    return state


def has_history(page: Page) -> bool:
    price, heat = chart_state(page, "price_chart"), chart_state(page, "heatmap")
    return (
        price is not None
        and heat is not None
        and price["series"][0] >= 2  # mid prices
        and heat["series"][0] > 0  # resting sizes
        and heat["series"][1] >= 1  # the mid over the heatmap
        and bool(price["y"])
        and bool(heat["y"])
    )


def open_tab(context: BrowserContext, url: str, errors: list[str]) -> Page:
    page = watched_tab(context, errors, {"width": 1280, "height": 1400})
    page.goto(url)
    page.wait_for_selector("[data-testid=price_chart]")
    page.wait_for_selector("[data-testid=heatmap]")
    return page


def test_history_charts_in_chromium(dashboard_url: str, tmp_path: Path) -> None:
    errors: list[str] = []
    with chromium(tmp_path / "profile") as context:
        first = open_tab(context, dashboard_url, errors)
        wait_until(lambda: has_history(first), 5.0, "both charts to hold data")
        price = chart_state(first, "price_chart")
        assert price is not None
        assert len(price["x"]) <= 300 and len(price["y"]) <= 100
        assert all(len(label) == 8 and label[2] == label[5] == ":" for label in price["x"])  # HH:MM:SS
        assert all(len(label.partition(".")[2]) == 2 for label in price["y"])  # AAPL: exact cents
        heat = chart_state(first, "heatmap")
        assert heat is not None and len(heat["x"]) <= 60 and len(heat["y"]) <= 40

        time.sleep(6.0)  # the history grows while only the first tab is open
        grown = chart_state(first, "price_chart")
        assert grown is not None and grown["series"][0] > price["series"][0]

        second = open_tab(context, dashboard_url, errors)
        # At once: the history gathered before this tab existed, not only what came after it opened.
        wait_until(lambda: has_history(second), 2.0, "the second tab's charts")
        later = chart_state(second, "price_chart")
        assert later is not None and later["series"][0] >= grown["series"][0] - 2

        ARTIFACTS.mkdir(exist_ok=True)
        second.screenshot(path=str(ARTIFACTS / "dashboard_charts.png"), full_page=True)
    assert errors == []

