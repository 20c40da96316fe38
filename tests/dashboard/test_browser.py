"""The page in a real browser: headless Debian Chromium (Playwright) against ``python run.py``.

The app and the feed run as subprocesses (``run.py --port P --feed-port Q``); the page must load without a
JavaScript error, switch to a second instrument from the dropdown, show that instrument's prices and keep
changing. A screenshot goes to artifacts/dashboard.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Page

from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec
from tests.dashboard.page_fixtures import CHROMIUM, REPO, chromium, running_dashboard, watched_tab
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (CI installs chromium)")

SPECS = {spec.instrument_id: spec for spec in DEFAULT_INSTRUMENTS}
ARTIFACTS = REPO / "artifacts"


@pytest.fixture(scope="module")
def dashboard_url() -> Iterator[str]:
    with running_dashboard("--rate", "100") as url:
        yield url


def column_texts(page: Page, testid: str, column: int) -> list[str]:
    return page.locator(f"[data-testid={testid}] tbody tr td:nth-child({column})").all_inner_texts()


def in_range(spec: InstrumentSpec, texts: list[str]) -> bool:
    """All the texts are prices of ``spec``: its decimals, and within 20% of its start price."""
    if not texts:
        return False
    for text in texts:
        if "." in text and len(text.split(".")[1]) != spec.price_decimals:
            return False
        if "." not in text and spec.price_decimals:
            return False
        try:
            price = Decimal(text.replace(",", ""))
        except ArithmeticError:
            return False
        if abs(price - spec.start_price) > spec.start_price * Decimal("0.2"):
            return False
    return True


def test_page_in_chromium(dashboard_url: str, tmp_path: Path) -> None:
    errors: list[str] = []
    with chromium(tmp_path / "profile") as context:
        page = watched_tab(context, errors, {"width": 1280, "height": 1000})
        page.goto(dashboard_url)

        first, second = SPECS["AAPL"], SPECS["MSFT"]
        page.wait_for_selector("[data-testid=bids] tbody tr td")
        wait_until(lambda: in_range(first, column_texts(page, "bids", 1)), 15.0, "the first instrument's bids")
        wait_until(lambda: page.inner_text("[data-testid=status]").strip() == "LIVE", 15.0, "status LIVE")

        page.click("[data-testid=instrument]")
        page.locator(".q-menu .q-item", has_text=f"{second.instrument_id} - {second.display_name}").click()
        wait_until(
            lambda: in_range(second, column_texts(page, "bids", 1)) and in_range(second, column_texts(page, "asks", 1)),
            15.0,
            "the second instrument's prices",
        )
        # Both tables read at one moment (two reads could straddle an update and see a crossed pair).
        bid_texts, ask_texts = page.evaluate(
            """() => ["bids", "asks"].map(id => Array.from(
                document.querySelectorAll(`[data-testid=${id}] tbody tr td:nth-child(1)`), td => td.innerText))"""
        )
        bids = [Decimal(text) for text in bid_texts]
        asks = [Decimal(text) for text in ask_texts]
        assert len(bids) == 15 and len(asks) == 15
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]

        # The tables keep changing.
        before = column_texts(page, "bids", 2) + column_texts(page, "asks", 2)
        sequence = page.inner_text("[data-testid=sequence]")
        wait_until(
            lambda: column_texts(page, "bids", 2) + column_texts(page, "asks", 2) != before,
            15.0,
            "the tables to change",
        )
        wait_until(lambda: page.inner_text("[data-testid=sequence]") != sequence, 15.0, "the sequence to move on")
        assert in_range(second, column_texts(page, "bids", 1))
        page.wait_for_selector("[data-testid=trades] tbody tr td")
        page.wait_for_selector("[data-testid=depth_chart] canvas")

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

        # Phone width: everything stacks in one column, nothing makes the page scroll sideways.
        page.set_viewport_size({"width": 390, "height": 844})
        wait_until(lambda: page.evaluate("document.documentElement.scrollWidth") <= 390, 15.0, "no sideways scrolling")
        bids_box = page.locator("[data-testid=bids]").bounding_box()
        asks_box = page.locator("[data-testid=asks]").bounding_box()
        assert bids_box is not None and asks_box is not None
        assert asks_box["y"] >= bids_box["y"] + bids_box["height"] - 1  # stacked, not side by side
        page.screenshot(path=str(ARTIFACTS / "dashboard_phone.png"), full_page=True)
    assert errors == []

