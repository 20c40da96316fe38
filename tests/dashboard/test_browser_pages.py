"""Links, the overview, dark mode and the phone layout in a real browser: headless Chromium against ``run.py``.

One dashboard (``python run.py``) and one browser profile for the module; every wait is bounded. Screenshots of
both pages at laptop and phone widths go to artifacts/ (book-laptop.png, book-phone.png, overview-laptop.png,
overview-phone.png).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import BrowserContext, Page, ViewportSize

from tests.dashboard.page_fixtures import CHROMIUM, REPO, chromium, running_dashboard, watched_tab
from tests.dashboard.test_browser import SPECS, column_texts, in_range
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (CI installs chromium)")

ARTIFACTS = REPO / "artifacts"
LAPTOP: ViewportSize = {"width": 1366, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def dashboard_url() -> Iterator[str]:
    with running_dashboard("--rate", "100") as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """One Chromium profile for the module (its cookies carry the dark-mode choice across reloads)."""
    with chromium(tmp_path_factory.mktemp("profile")) as context:
        yield context


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    """A new tab that must see no JavaScript error."""
    errors: list[str] = []
    tab = watched_tab(browser, errors, LAPTOP)
    try:
        yield tab
    finally:
        tab.close()
    assert errors == []


URL_WAIT_MS = 15_000  # the address a click or the dropdown leads to


def shows_book_of(page: Page, instrument_id: str) -> None:
    spec = SPECS[instrument_id]
    wait_until(
        lambda: in_range(spec, column_texts(page, "bids", 1)) and in_range(spec, column_texts(page, "asks", 1)),
        15.0,
        f"{instrument_id}'s prices",
    )
    wait_until(lambda: page.inner_text("[data-testid=status]").strip() == "LIVE", 15.0, "status LIVE")
    assert instrument_id in page.inner_text("[data-testid=instrument]")


def no_sideways_scrolling(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_a_link_opens_its_instrument_and_the_dropdown_changes_the_address(dashboard_url: str, page: Page) -> None:
    page.goto(f"{dashboard_url}?instrument=ETH-USD")
    shows_book_of(page, "ETH-USD")
    msft = SPECS["MSFT"]
    page.click("[data-testid=instrument]")
    page.locator(".q-menu .q-item", has_text=f"{msft.instrument_id} - {msft.display_name}").click()
    shows_book_of(page, "MSFT")
    page.wait_for_url(lambda url: urlparse(url).query == "instrument=MSFT", timeout=URL_WAIT_MS)
    # A reload keeps the instrument (the address says it).
    page.reload()
    shows_book_of(page, "MSFT")
    # The size bars are drawn behind the sizes, the widest one full width.
    widths = page.evaluate(
        """() => Array.from(document.querySelectorAll('[data-testid=size_bar]'), bar => bar.style.width)"""
    )
    assert len(widths) == 30 and "100%" in widths


def test_overview_shows_every_instrument_and_a_row_opens_its_book(dashboard_url: str, page: Page) -> None:
    page.goto(f"{dashboard_url}overview")
    wait_until(
        lambda: (
            column_texts(page, "overview", 1) == list(SPECS)
            and "-" not in column_texts(page, "overview", 2)
            and set(column_texts(page, "overview", 7)) == {"LIVE"}
        ),
        15.0,
        "every instrument LIVE in the overview",
    )
    page.locator("[data-testid=overview] tbody tr", has_text="BTC-USD").click()
    # The server answers the click with a navigation, after a round trip: wait for it with Playwright's own wait,
    # which takes the browser's events in (page.url polled between sleeps does not, in the sync API).
    page.wait_for_url(lambda url: urlparse(url).query == "instrument=BTC-USD", timeout=URL_WAIT_MS)
    shows_book_of(page, "BTC-USD")
    page.click("[data-testid=page_link]")
    page.wait_for_url(lambda url: urlparse(url).path == "/overview", timeout=URL_WAIT_MS)


def test_dark_mode_survives_a_reload(dashboard_url: str, page: Page) -> None:
    page.goto(dashboard_url)
    page.wait_for_selector("[data-testid=bids] tbody tr td")
    is_dark = "document.body.classList.contains('body--dark')"
    assert page.evaluate(is_dark) is False
    page.click("[data-testid=dark_mode]")
    wait_until(lambda: bool(page.evaluate(is_dark)), 15.0, "dark mode")
    page.reload()
    page.wait_for_selector("[data-testid=bids] tbody tr td")
    assert page.evaluate(is_dark) is True
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_selector("[data-testid=trades] tbody tr td")
    page.screenshot(path=str(ARTIFACTS / "book-dark.png"), full_page=True)
    page.goto(f"{dashboard_url}overview")
    page.wait_for_selector("[data-testid=overview] tbody tr td")
    assert page.evaluate(is_dark) is True
    page.click("[data-testid=dark_mode]")  # back to light for the screenshots
    wait_until(lambda: not page.evaluate(is_dark), 15.0, "light mode")
    page.reload()
    page.wait_for_selector("[data-testid=overview] tbody tr td")
    assert page.evaluate(is_dark) is False


def test_screenshots_and_phone_width(dashboard_url: str, page: Page) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for name, path, ready in (
        ("book", "?instrument=AAPL", "[data-testid=trades] tbody tr td"),
        ("overview", "overview", "[data-testid=overview] tbody tr td"),
    ):
        page.set_viewport_size(LAPTOP)
        page.goto(f"{dashboard_url}{path}")
        page.wait_for_selector(ready)
        page.screenshot(path=str(ARTIFACTS / f"{name}-laptop.png"), full_page=True)
        page.set_viewport_size(PHONE)
        wait_until(lambda: no_sideways_scrolling(page), 15.0, f"{name}: no sideways scrolling at 390 px")
        page.screenshot(path=str(ARTIFACTS / f"{name}-phone.png"), full_page=True)
    # The book's tables stack in one column at phone width.
    page.goto(f"{dashboard_url}?instrument=AAPL")
    page.wait_for_selector("[data-testid=asks] tbody tr td")
    wait_until(lambda: no_sideways_scrolling(page), 15.0, "book: no sideways scrolling at 390 px")
    bids_box = page.locator("[data-testid=bids]").bounding_box()
    asks_box = page.locator("[data-testid=asks]").bounding_box()
    assert bids_box is not None and asks_box is not None
    assert asks_box["y"] >= bids_box["y"] + bids_box["height"] - 1
    assert bids_box["x"] >= 0 and bids_box["x"] + bids_box["width"] <= PHONE["width"]
