"""Row 5 (and the one-page part of row 7): headless Chromium tabs on ``/``, driven by Playwright.

Debian's Chromium (``/usr/bin/chromium``) with a fresh user-data dir; never ``playwright install``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import BrowserContext, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.servers import CHROMIUM, CHROMIUM_FLAGS

__all__ = ["CHROMIUM", "CHROMIUM_FLAGS", "browser", "open_tabs"]

log = logging.getLogger(__name__)

@contextmanager
def browser() -> Iterator[BrowserContext]:
    """A persistent Chromium context in a fresh user-data dir, closed on exit."""
    with tempfile.TemporaryDirectory(prefix="bench-chromium-") as user_data, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def open_tabs(context: BrowserContext, url: str, count: int, timeout_s: float = 30) -> tuple[list[Page], list[str]]:
    """Open ``count`` more tabs on ``url`` and wait until each shows its book tables.

    Returns the tabs that did and one line per tab that did not (timeouts), so that a saturated server
    is measured with the tabs it managed to serve rather than not at all.
    """
    pages: list[Page] = []
    failures: list[str] = []
    errors: list[str] = []
    for _ in range(count):
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(url, wait_until="domcontentloaded", timeout=timeout_s * 1000)
        except PlaywrightError as exc:
            failures.append(str(exc).splitlines()[0])
            continue
        pages.append(page)
    ready: list[Page] = []
    for page in pages:
        try:
            page.wait_for_selector("table", timeout=timeout_s * 1000)
            ready.append(page)
        except PlaywrightError as exc:
            failures.append(str(exc).splitlines()[0])
    if errors:
        log.warning("JavaScript errors in the tabs: %s", errors[:3])
    return ready, failures
