"""``python run.py --bus nats://HOST:PORT``: the feed publishes to an existing NATS server, the dashboard consumes
from it; an unreachable NATS server is one error line and exit 1 before anything starts."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from tests.bus.support import NatsServer, needs_nats
from tests.servers import REPO_ROOT, child_env, free_port
from tests.test_run import START_TIMEOUT, start_run, text_of, wait_for_line
from tests.waiting import eventually, stop_process

pytestmark = needs_nats


async def _all_live(http: httpx.AsyncClient, timeout: float) -> list[dict[str, object]]:  # noqa: ASYNC109
    """The dashboard's books once every one of the 7 is live (bounded)."""
    books: list[dict[str, object]] = []

    async def live() -> bool:
        listed = (await http.get("/api/instruments")).json()
        if len(listed) != 7:
            return False
        books[:] = [(await http.get(f"/api/book/{item['instrument_id']}?depth=5")).json() for item in listed]
        return all(book.get("stale") is False for book in books)

    await eventually(live, timeout, lambda: f"every book live; last {books}", every=0.2)
    return books


async def test_run_bus_serves_the_dashboard_from_nats(nats_server: NatsServer) -> None:
    port = free_port()
    process, output = start_run(
        "--port", str(port), "--feed-port", str(free_port()), "--rate", "100", "--bus", nats_server.url
    )
    children: list[psutil.Process] = []
    try:
        line = await asyncio.to_thread(wait_for_line, process, output, "Bus:", START_TIMEOUT)
        assert nats_server.url in line
        await asyncio.to_thread(wait_for_line, process, output, "Dashboard:", START_TIMEOUT)
        children = psutil.Process(process.pid).children(recursive=True)
        dashboard = next(c for c in children if "dashboard" in c.cmdline())
        assert nats_server.url in dashboard.cmdline(), "the dashboard must consume from NATS"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15.0) as http:
            books = await _all_live(http, 30.0)
        assert all(book["bids"] and book["asks"] for book in books)
        process.terminate()
        await asyncio.to_thread(process.wait, 30.0)
        log = text_of(output)
        assert process.returncode == 0, log
        assert "Traceback" not in log, log
    finally:
        stop_process(process, also=children)
        output.close()


def test_run_bus_unreachable_is_one_line_and_exit_1_before_anything_starts() -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "run.py", "--port", str(free_port()), "--bus", url, "--start-timeout", "3"],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and url in lines[0] and "NATS" in lines[0], result.stderr
    assert time.monotonic() - started < 3 + 5  # within the start-up timeout (plus the interpreter's start)


@pytest.mark.parametrize(
    "args", [["--bus", "127.0.0.1:4222"], ["--bus", "nats://127.0.0.1:4222", "--feed-address", "127.0.0.1:50051"]]
)
def test_run_bus_bad_arguments_are_one_line(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "run.py", *args], cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and "--bus" in result.stderr, result.stderr
