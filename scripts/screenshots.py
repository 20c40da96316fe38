"""``python -m scripts.screenshots [--wait 60] [--out scripts/screenshots]``: the README's screenshots of the pages.

Runs ``python run.py`` on free ports (127.0.0.1), lets the dashboard gather ``--wait`` seconds of history, and
saves the book page ``/`` and the overview ``/overview`` at laptop width (1366 px) with Debian's headless
Chromium (Playwright, never a downloaded browser): ``book.png`` and ``overview.png``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from playwright.sync_api import ViewportSize, sync_playwright

from tests.dashboard.page_fixtures import CHROMIUM, CHROMIUM_ARGS, REPO, running_dashboard

log = logging.getLogger("screenshots")

LAPTOP: ViewportSize = {"width": 1366, "height": 900}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wait", type=float, default=60.0, help="seconds of history before the shots")
    parser.add_argument("--out", type=Path, default=REPO / "scripts" / "screenshots")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        running_dashboard("--rate", "50") as url,
        tempfile.TemporaryDirectory(prefix="screenshots-") as profile,
        sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, viewport=LAPTOP
        )
        try:
            page = context.new_page()
            page.goto(url + "?instrument=BTC-USD")
            log.info("gathering %g s of history", args.wait)
            time.sleep(args.wait)
            page.screenshot(path=str(args.out / "book.png"), full_page=True)
            page.goto(url + "overview")
            time.sleep(2.0)
            page.screenshot(path=str(args.out / "overview.png"), full_page=True)
        finally:
            context.close()
    log.info("saved %s and %s", args.out / "book.png", args.out / "overview.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
