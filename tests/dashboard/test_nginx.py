"""Many dashboards behind one address: Debian's nginx (a private instance on a free 127.0.0.1 port, configured by
``scripts/nginx_dashboards.py`` from ``scripts/nginx/dashboards.conf``) in front of two real dashboards that consume
one feed through a real nats-server (the scale-out set-up). Through nginx the page loads in headless Chromium and
stays live, and the JSON WebSocket and REST answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from scripts.nginx_dashboards import write_config
from tests.bus.support import NATS_SERVER, NatsServer
from tests.dashboard.conftest import Dashboard, start_dashboard
from tests.dashboard.page_fixtures import CHROMIUM, chromium, watched_tab
from tests.dashboard.ws_helpers import SPECS, check_book, recv_book
from tests.servers import feed_process, free_port
from tests.waiting import stop_process, wait_until

NGINX = "/usr/sbin/nginx"

pytestmark = pytest.mark.skipif(
    not all(Path(p).exists() for p in (NGINX, CHROMIUM, NATS_SERVER)),
    reason="nginx, chromium or nats-server is missing (CI installs them)",
)


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[Dashboard]]]:
    """Two dashboards on one feed publishing to NATS, and nginx in front of them; yields (nginx's http base URL,
    the dashboards)."""
    prefix = tmp_path_factory.mktemp("nginx")
    bus = NatsServer(free_port())
    bus.start()
    with contextlib.ExitStack() as stack:
        stack.callback(bus.stop)
        stack.enter_context(feed_process("--seed", "4", "--rate", "100", "--publish", bus.url))
        dashboards = [start_dashboard(bus.url), start_dashboard(bus.url)]
        listen = free_port()
        config = write_config(prefix, listen, [d.port for d in dashboards])
        nginx = subprocess.Popen(
            [NGINX, "-p", str(prefix), "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            def accepting() -> bool:
                assert nginx.poll() is None, nginx.stderr.read().decode() if nginx.stderr else ""
                try:
                    socket.create_connection(("127.0.0.1", listen), timeout=0.2).close()
                except OSError:
                    return False
                return True

            wait_until(accepting, 10.0, "nginx accepting connections")
            yield f"http://127.0.0.1:{listen}", dashboards
        finally:
            stop_process(nginx)
            for dashboard in dashboards:
                log = dashboard.stop()
                assert "Traceback" not in log, log


def get(url: str) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return response.status, response.read()


def test_rest_answers_through_nginx(behind_nginx: tuple[str, list[Dashboard]]) -> None:
    base, _ = behind_nginx
    for _ in range(6):  # least connections: both replicas get some of these
        status, body = get(f"{base}/api/instruments")
        assert status == 200 and {i["instrument_id"] for i in json.loads(body)} == set(SPECS)
    book: dict[str, Any] = {}

    def live() -> bool:  # stale (and empty) until the dashboard has joined the instrument's stream
        try:
            status, body = get(f"{base}/api/book/AAPL?depth=5")
        except urllib.error.HTTPError as exc:  # 503 until the dashboard has listed the instruments
            assert exc.code == 503
            return False
        assert status == 200
        book.update(json.loads(body))
        return book["stale"] is False

    wait_until(live, 15.0, lambda: f"the book live; last {book}", every=0.2)
    assert book["instrument_id"] == "AAPL"
    check_book(book, SPECS["AAPL"], 5)


async def test_the_json_websocket_answers_through_nginx(behind_nginx: tuple[str, list[Dashboard]]) -> None:
    base, _ = behind_nginx
    url = base.replace("http://", "ws://") + "/ws/market_data/BTC-USD?depth=10"
    async with asyncio.timeout(30), connect(url) as ws:
        first = await recv_book(ws, within=15)
        check_book(first, SPECS["BTC-USD"], 10)
        later = await recv_book(ws, within=15)
        assert later["sequence"] > first["sequence"]


def test_the_page_loads_and_stays_live_through_nginx(behind_nginx: tuple[str, list[Dashboard]], tmp_path: Path) -> None:
    base, _ = behind_nginx
    errors: list[str] = []
    with chromium(tmp_path / "profile") as context:
        page = watched_tab(context, errors)
        page.goto(f"{base}/?instrument=ETH-USD")
        page.wait_for_selector("[data-testid=bids] tbody tr td")
        wait_until(lambda: page.inner_text("[data-testid=status]").strip() == "LIVE", 15.0, "LIVE through nginx")
        sequence = page.inner_text("[data-testid=sequence]")
        for _ in range(10):  # stays live for 3 s, the book moving on
            time.sleep(0.3)  # the window under test: live all through it
            assert page.inner_text("[data-testid=status]").strip() == "LIVE"
        assert page.inner_text("[data-testid=sequence]") != sequence
    assert errors == []
