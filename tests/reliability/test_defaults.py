"""Safe defaults: loopback-only listening sockets, and feed strings shown as text on the page, never as HTML.

- ``python run.py`` (no ``--host``) and ``python -m dashboard`` (no ``--host``) listen on 127.0.0.1 only; run.py
  starts ``python -m feed_server`` without ``--host``, so that covers the feed's default too. Checked with psutil
  on the processes' listening sockets.
- A feed whose instrument display name is HTML with a script (``<b>``, ``<img onerror>``, ``<script>``): in a
  real browser the page shows the literal text in the dropdown and the status area, creates no such element,
  and runs no script.
"""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from playwright.async_api import async_playwright

from tests.reliability.conftest import start_dashboard_process, wait_http
from tests.servers import CHROMIUM, REPO_ROOT, child_env, free_port, wait_for_health
from tests.servers import CHROMIUM_FLAGS as CHROMIUM_ARGS
from tests.waiting import stop_process, wait_until

EVIL_NAME = '<b id="xss-b">bold</b><img id="xss-img" src="x" onerror="window.__xss=1"><script>window.__xss=2</script>'
EVIL_FEED = """
import asyncio, logging, sys
from decimal import Decimal
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec
from feed_server.server.feed import serve
logging.basicConfig(level=logging.INFO)
evil = InstrumentSpec("XSS", sys.argv[2], "<i>equity</i>", Decimal("0.01"), Decimal("1"), Decimal("100.00"), 0.0004, 10)
asyncio.run(serve(host="127.0.0.1", port=int(sys.argv[1]), instruments=(evil, DEFAULT_INSTRUMENTS[0]), rate=20.0))
"""


def loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1, or an IPv4-mapped loopback address (gRPC binds ::ffff:127.0.0.1)."""
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def listening(pids: list[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every listening TCP socket of these processes."""
    out = []
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                out.append((pid, conn.laddr.ip, conn.laddr.port))
    return out


def wait_listening(pids: list[int], ports: set[int], seconds: float) -> list[tuple[int, str, int]]:
    """What ``pids`` listen on, once that covers every port in ``ports`` (AssertionError after ``seconds``)."""
    found: list[tuple[int, str, int]] = []

    def covered() -> bool:
        found[:] = listening(pids)
        return ports <= {port for _, _, port in found}

    wait_until(covered, seconds, lambda: f"listening on {ports}; found {found}", every=0.2)
    return found


def test_run_py_and_the_dashboard_listen_on_loopback_by_default(tmp_path: Path) -> None:
    port, feed_port = free_port(), free_port()
    run = subprocess.Popen(
        [sys.executable, "run.py", "--port", str(port), "--feed-port", str(feed_port)],
        cwd=REPO_ROOT,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    alone = None
    try:
        wait_http(f"http://127.0.0.1:{port}/", 40.0, run)
        children = [p.pid for p in psutil.Process(run.pid).children(recursive=True)]
        found = wait_listening(children, {port, feed_port}, 10.0)
        assert {port, feed_port} <= {p for _, _, p in found}, found
        assert all(loopback(ip) for _, ip, _ in found), f"run.py's children listen on {found}"

        alone = start_dashboard_process_without_host(f"127.0.0.1:{feed_port}", free_port())
        found_alone = wait_listening([alone[0].pid], {alone[1]}, 40.0)
        assert alone[1] in {p for _, _, p in found_alone}, found_alone
        assert all(loopback(ip) for _, ip, _ in found_alone), f"python -m dashboard listens on {found_alone}"
    finally:
        if alone is not None:
            stop_process(alone[0])
        stop_process(run, grace=15.0)
    assert run.returncode == 0


def start_dashboard_process_without_host(feed_address: str, port: int) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "dashboard", "--feed-address", feed_address, "--port", str(port)],
        cwd=REPO_ROOT,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return process, port


def start_evil_feed(port: int) -> subprocess.Popen[bytes]:
    """A feed process whose first instrument, XSS, has EVIL_NAME as its display name."""
    return subprocess.Popen(
        [sys.executable, "-c", EVIL_FEED, str(port), EVIL_NAME],
        cwd=REPO_ROOT,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (CI installs chromium)")
async def test_an_instrument_name_with_html_is_shown_as_text(tmp_path: Path) -> None:
    feed_port = free_port()
    feed = start_evil_feed(feed_port)
    board = None
    try:
        await asyncio.to_thread(wait_for_health, f"127.0.0.1:{feed_port}", 20.0)
        board = start_dashboard_process(f"127.0.0.1:{feed_port}", log_path=tmp_path / "dashboard.log")
        await asyncio.to_thread(wait_http, board.url + "/api/book/XSS", 30.0, board.process)
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = await context.new_page()
                page.set_default_timeout(15_000)
                await page.goto(board.url + "/")
                await page.wait_for_selector("[data-testid=bids] tbody tr td")
                await page.click("[data-testid=instrument]")
                option = page.locator(".q-menu .q-item", has_text="XSS - ")
                await option.first.wait_for()
                option_text = await option.first.inner_text()
                shown = await page.inner_text("body")
                injected = await page.evaluate(
                    "() => [document.getElementById('xss-b'), document.getElementById('xss-img'),"
                    " window.__xss ?? null].filter((x) => x !== null).length"
                )
            finally:
                await context.close()
    finally:
        if board is not None:
            stop_process(board.process)
        stop_process(feed)
    assert EVIL_NAME in option_text, option_text
    assert EVIL_NAME in shown
    assert injected == 0, "the instrument name was rendered as HTML"
