"""Measure the dashboard's CPU with N open browser tabs, and the page's refresh rate as a browser sees it.

    python -m scripts.measure_tabs --tabs 10 --seconds 10 [--rate 50]

Starts ``python run.py`` on free ports (in its own process group, stopped at the end), opens N tabs of ``/``
in headless Debian Chromium (Playwright, /usr/bin/chromium), and samples the CPU of every process of run.py's
tree with psutil: first with no tab open, then with the N tabs. The refresh rate is the number of times per
second the sequence label of one tab changes, counted in the browser.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

import psutil
from playwright.sync_api import BrowserContext, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from bench.procs import free_port
from bench.tabs import CHROMIUM, CHROMIUM_FLAGS
from feed_server.launch import StartupError, http_ok, wait_ready

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    *CHROMIUM_FLAGS,
    # Ten tabs in one window: keep the hidden ones running as if each had its own screen.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
reloads: list[str] = []
COUNT_CHANGES_JS = """
async (seconds) => {
  const label = document.querySelector('[data-testid=sequence]');
  let last = label.textContent, changes = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    if (label.textContent !== last) { last = label.textContent; changes += 1; }
  }
  return changes / seconds;
}
"""


def process_tree(root: psutil.Process) -> dict[str, psutil.Process]:
    """run.py and its children, named by what they run."""
    named = {"run.py": root}
    for child in root.children(recursive=True):
        with suppress(psutil.Error):
            cmdline = " ".join(child.cmdline())
            name = "feed server" if "feed_server" in cmdline else "dashboard" if "dashboard" in cmdline else cmdline
            named[name] = child
    return named


def chromium_processes() -> list[psutil.Process]:
    """This script's own browser (under Playwright's driver), not any other Chromium on the machine."""
    return [p for p in psutil.Process().children(recursive=True) if "chrom" in p.name()]


def sample_cpu(
    processes: dict[str, psutil.Process], seconds: float, groups: dict[str, list[psutil.Process]] | None = None
) -> dict[str, float]:
    """CPU percent of one core per process (and summed per group of processes) over ``seconds``."""
    groups = groups or {}
    everything = [*processes.values(), *(p for group in groups.values() for p in group)]
    for process in everything:
        with suppress(psutil.Error):
            process.cpu_percent(None)
    time.sleep(seconds)
    result = {name: process.cpu_percent(None) for name, process in processes.items()}
    for name, group in groups.items():
        total = 0.0
        for process in group:
            with suppress(psutil.Error):
                total += process.cpu_percent(None)
        result[name] = total
    return result


def wait_served(url: str, process: subprocess.Popen[bytes], within: float = 30.0) -> float:
    started = time.monotonic()
    try:
        wait_ready(url, lambda: http_ok(url), within, [process])
    except StartupError as exc:
        raise SystemExit(str(exc)) from None
    return time.monotonic() - started


def open_tab(context: BrowserContext, url: str) -> Page:
    page = context.new_page()
    page.on("console", lambda message: reloads.append(message.text) if "reloading" in message.text else None)
    page.goto(url)
    page.wait_for_selector("[data-testid=bids] tbody tr td", timeout=60_000)
    return page


def refresh_rate(page: Page, seconds: float = 3.0) -> float:
    """Changes per second of the tab's sequence label, counted in the browser (retried after a reload)."""
    for _ in range(3):
        with suppress(PlaywrightError):
            page.wait_for_selector("[data-testid=sequence]", timeout=30_000)
            return float(page.evaluate(COUNT_CHANGES_JS, seconds))
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tabs", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0, help="CPU sampling time per phase")
    parser.add_argument("--rate", type=int, default=None, help="the feed's --rate (default: run.py's)")
    args = parser.parse_args()

    port, feed_port = free_port(), free_port()
    command = [sys.executable, "run.py", "--port", str(port), "--feed-port", str(feed_port)]
    if args.rate is not None:
        command += ["--rate", str(args.rate)]
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    run = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        startup = wait_served(url, run)
        time.sleep(2.0)  # warm-up
        processes = process_tree(psutil.Process(run.pid))
        idle = sample_cpu(processes, args.seconds)
        with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                pages = [open_tab(context, url)]
                time.sleep(1.0)
                single_hz = refresh_rate(pages[0])
                pages += [open_tab(context, url) for _ in range(args.tabs - 1)]
                time.sleep(2.0)
                browser = {f"chromium ({len(chromium)} procs)": chromium for chromium in [chromium_processes()]}
                loaded = sample_cpu(processes, args.seconds, browser)
                refresh_hz = refresh_rate(pages[0])
                last_hz = refresh_rate(pages[-1])
            finally:
                context.close()
    finally:
        children = psutil.Process(run.pid).children(recursive=True) if run.poll() is None else []
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)
            try:
                run.wait(15)
            except subprocess.TimeoutExpired:
                run.kill()
        for child in children:  # run.py's children live in their own process groups
            with suppress(psutil.Error):
                child.kill()

    print(f"{' '.join(command[1:])}: served after {startup:.2f} s")
    print(f"{'process':<14} {'no tab (% core)':>16} {f'{args.tabs} tabs (% core)':>18}")
    for name in loaded:
        print(f"{name:<14} {idle.get(name, 0.0):>16.1f} {loaded[name]:>18.1f}")
    print(f"page refresh rate seen by the browser: {single_hz:.1f} Hz with one tab open;")
    print(f"  with {args.tabs} tabs open: first tab {refresh_hz:.1f} Hz, last tab {last_hz:.1f} Hz")
    print(f"page reloads (NiceGUI lost a tab's connection): {len(reloads)}")
    print(f"machine load average at the end: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
