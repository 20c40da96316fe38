"""Rows 5, 6 and 7 on one ``python run.py`` at its default rate: start-up, idle CPU, one page, browser tabs.

Order: launch run.py and time ``/`` (row 6; the full run launches it three times and takes the median);
on the last launch measure run.py's feed, whose only subscriber is the dashboard, and the dashboard with no
client (7a, 7b; a lone feed server with no subscriber over the same window, in 7a's note); open one Chromium
tab and measure both run.py processes (7c, 7d); open more tabs up to ``TABS`` and measure the dashboard's CPU
(row 5).
"""

from __future__ import annotations

import logging
import statistics
import time

from bench.idle import dashboard_process, feed_process, idle_cpu
from bench.procs import Proc, cpu_percent
from bench.report import Result, at_most, error_result, info
from bench.startup import launched_run_py
from bench.tabs import browser, open_tabs

__all__ = ["TABS", "run"]

log = logging.getLogger(__name__)

TABS = 25
QUICK_TABS = 3
SETTLE_S = 1.0


def _browser_rows(proc: Proc, base: str, tabs: int, window: float) -> list[Result]:
    """Rows 7c, 7d (one tab) and 5 (``tabs`` tabs) on a running run.py."""
    feed, dash = feed_process(proc), dashboard_process(proc)
    with browser() as context:
        first, failures = open_tabs(context, f"{base}/", 1)
        time.sleep(SETTLE_S)
        feed_page, dash_page = cpu_percent([feed, dash], window)
        more, more_failures = open_tabs(context, f"{base}/", tabs - 1)
        failures += more_failures
        opened = len(first) + len(more)
        time.sleep(SETTLE_S)
        (dash_tabs,) = cpu_percent([dash], window)
    note = f"over {window:g} s, 1 tab: {dash_page:.1f}%; {opened} of {tabs} tabs showed their tables"
    if failures:
        note += f" ({len(failures)} failed: {failures[0]})"
    return [
        Result("5", f"dashboard CPU with {tabs} headless Chromium tabs on /", dash_tabs, "% core", at_most(50, "< 50"),
               note=note),
        Result("7c", "CPU: feed server under run.py, one page open", feed_page, "% core", info()),
        Result("7d", "CPU: dashboard, one page open", dash_page, "% core", info()),
    ]


def run(quick: bool) -> list[Result]:
    launches = 1 if quick else 3
    window = 2.0 if quick else 10.0
    tabs = QUICK_TABS if quick else TABS
    startups: list[float] = []
    idle: list[Result] = []
    browser_rows: list[Result] = []
    for n in range(launches):
        with launched_run_py() as (proc, base, seconds):
            startups.append(seconds)
            log.info("run.py served / after %.2f s", seconds)
            if n < launches - 1:
                continue
            time.sleep(SETTLE_S)
            feed_idle, dash_idle, feed_alone, floor_server, floor_client = idle_cpu(proc, window)
            same_process = " (run.py itself)" if dashboard_process(proc).pid == proc.pid else ""
            idle = [
                Result("7a", "idle CPU: feed server, default rate, the dashboard its only subscriber", feed_idle,
                       "% core", at_most(1.3 * floor_server, "<= 1.3x 7e"), baseline=floor_server,
                       note=f"over {window:g} s; a lone feed server with no subscriber: {feed_alone:.1f}%"),
                Result("7b", f"idle CPU: dashboard{same_process}, no page or socket", dash_idle, "% core",
                       at_most(1.3 * floor_client, "<= 1.3x 7f"), baseline=floor_client),
                Result("7e", "idle floor: a bare grpc.aio server sending the feed's stream items at their times",
                       floor_server, "% core", info(), note=f"over {window:g} s, items recorded from a lone feed"),
                Result("7f", "idle floor: a bare grpc.aio client reading and parsing them", floor_client, "% core",
                       info()),
            ]
            try:
                browser_rows = _browser_rows(proc, base, tabs, window)
            except Exception as exc:
                log.exception("browser rows failed")
                message = f"{type(exc).__name__}: {exc}".splitlines()[0]
                browser_rows = [error_result(row, "browser tabs", "% core", message) for row in ("5", "7c", "7d")]
    startup = Result("6", "start-up: python run.py -> / answers 200", statistics.median(startups), "s",
                     at_most(3.0, "< 3"), note=f"launches: {', '.join(f'{s:.2f}' for s in startups)} s")
    by_row = {r.row: r for r in [*browser_rows, startup, *idle]}
    return [by_row[row] for row in ("5", "6", "7a", "7b", "7c", "7d", "7e", "7f")]
