"""``python run.py``: starts the feed and the dashboard, serves, and stops cleanly, leaving no process behind."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import tempfile
from typing import IO

import httpx
import psutil
import pytest
from websockets.asyncio.client import connect

from tests.servers import REPO_ROOT, child_env, free_port
from tests.waiting import eventually, stop_process, wait_until

START_TIMEOUT = 60.0  # generous: the test machine may be busy


def start_run(*args: str) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    output = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "run.py", *args], cwd=REPO_ROOT, env=child_env(), stdout=output, stderr=subprocess.STDOUT
    )
    return process, output


def text_of(output: IO[bytes]) -> str:
    output.seek(0)
    return output.read().decode(errors="replace")


def wait_for_line(process: subprocess.Popen[bytes], output: IO[bytes], prefix: str, timeout: float) -> str:
    """The first line of ``output`` that starts with ``prefix`` (bounded; fails at once if run.py exits)."""
    found: list[str] = []

    def seen() -> bool:
        found[:] = [line for line in text_of(output).splitlines() if line.startswith(prefix)]
        assert found or process.poll() is None, f"run.py exited early:\n{text_of(output)}"
        return bool(found)

    wait_until(seen, timeout, lambda: f"no line starting with {prefix!r}:\n{text_of(output)}")
    return found[0]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_run_serves_and_stops_cleanly(signum: signal.Signals) -> None:
    port, feed_port = free_port(), free_port()
    process, output = start_run("--port", str(port), "--feed-port", str(feed_port), "--rate", "100")
    children: list[psutil.Process] = []
    try:
        line = await asyncio.to_thread(wait_for_line, process, output, "Dashboard:", START_TIMEOUT)
        assert line.startswith(f"Dashboard: http://127.0.0.1:{port}/")
        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) == 2, children
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15.0) as http:
            page = await http.get("/")
            assert page.status_code == 200 and "<html" in page.text.lower()
            listed = await http.get("/api/instruments")
            assert listed.status_code == 200 and len(listed.json()) == 7
        # Stop while a WebSocket client is connected and reading.
        async with connect(f"ws://127.0.0.1:{port}/ws/market_data/AAPL") as ws:
            async with asyncio.timeout(15.0):
                await ws.recv()
            process.send_signal(signum)
            await asyncio.to_thread(process.wait, 30.0)
        log = text_of(output)
        assert process.returncode == 0, log
        assert "Traceback" not in log and "ERROR" not in log, log
        _, alive = psutil.wait_procs(children, timeout=5.0)
        assert not alive, f"left behind: {alive}"
    finally:
        stop_process(process, also=children)
        output.close()


async def test_run_exits_1_with_one_line_when_the_feed_never_answers() -> None:
    port = free_port()
    process, output = start_run(
        "--port", str(free_port()), "--feed-address", f"127.0.0.1:{port}", "--start-timeout", "2"
    )
    children: list[psutil.Process] = []
    try:
        # Its children (for the clean-up below) once it has started one, or it has exited already.
        await eventually(lambda: process.poll() is not None or bool(psutil.Process(process.pid).children()), 10.0)
        if process.poll() is None:
            children = psutil.Process(process.pid).children(recursive=True)
        await asyncio.to_thread(process.wait, 45.0)
        log = text_of(output)
        assert process.returncode == 1, log
        errors = [line for line in log.splitlines() if line.startswith("run.py: error:")]
        assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0], log
        assert "Traceback" not in log, log
        _, alive = psutil.wait_procs(children, timeout=5.0)
        assert not alive, f"left behind: {alive}"
    finally:
        stop_process(process, also=children)
        output.close()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--port", "abc"], "--port"),
        (["--feed-port", "70000"], "--feed-port"),
        (["--feed-address", "nonsense"], "--feed-address"),
    ],
)
def test_bad_arguments_give_one_error_line_and_exit_1(args: list[str], named: str) -> None:
    result = subprocess.run(
        [sys.executable, "run.py", *args], cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and named in result.stderr, result.stderr


def test_the_dashboard_alone_refuses_bad_arguments_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dashboard", "--feed-address", "nonsense"],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and "--feed-address" in result.stderr, result.stderr


def _children_by_module(process: subprocess.Popen[bytes], timeout: float) -> dict[str, psutil.Process]:
    """run.py's two children, by the module they run ("feed_server", "dashboard"), once both are started."""
    found: dict[str, psutil.Process] = {}

    def both() -> bool:
        found.clear()
        try:
            for child in psutil.Process(process.pid).children(recursive=True):
                cmdline = child.cmdline()
                for module in ("feed_server", "dashboard"):
                    if module in cmdline:
                        found[module] = child
        except psutil.NoSuchProcess:
            pass
        assert len(found) == 2 or process.poll() is None, "run.py exited before starting both children"
        return len(found) == 2

    wait_until(both, timeout, "run.py starting both children")
    return found


async def test_run_exits_1_naming_the_feed_when_the_feed_crashes_and_leaves_nothing_behind(monkeypatch):
    # The feed's engine fails on purpose after 3,500 events (7 instruments at 50/s: about 10 s), whether or not the
    # dashboard is ready by then; run.py names the feed and its exit code, stops the dashboard and exits 1.
    monkeypatch.setenv("FEED_TEST_CRASH_AFTER_EVENTS", "3500")
    process, output = start_run("--port", str(free_port()), "--feed-port", str(free_port()), "--rate", "50")
    children: list[psutil.Process] = []
    try:
        found = await asyncio.to_thread(_children_by_module, process, 30.0)
        children = list(found.values())
        feed = found["feed_server"]
        await asyncio.to_thread(process.wait, 90.0)
        log = text_of(output)
        assert process.returncode == 1, log
        died = [line for line in log.splitlines() if line.startswith("run.py:")]
        assert died == [f"run.py: the feed server (pid {feed.pid}) exited with code 2; stopping the dashboard"], log
        assert log.count("Traceback (most recent call last)") == 1, log  # the feed's failure, logged once
        _, alive = psutil.wait_procs(children, timeout=5.0)
        assert not alive, f"left behind: {alive}"
    finally:
        stop_process(process, also=children)
        output.close()


async def test_run_exits_1_naming_the_dashboard_when_it_dies_and_stops_the_feed():
    port = free_port()
    process, output = start_run("--port", str(port), "--feed-port", str(free_port()), "--rate", "20")
    children: list[psutil.Process] = []
    try:
        await asyncio.to_thread(wait_for_line, process, output, "Dashboard:", START_TIMEOUT)
        found = await asyncio.to_thread(_children_by_module, process, 5.0)
        children = list(found.values())
        dashboard, feed = found["dashboard"], found["feed_server"]
        dashboard.kill()
        await asyncio.to_thread(process.wait, 30.0)
        log = text_of(output)
        assert process.returncode == 1, log
        died = [line for line in log.splitlines() if line.startswith("run.py:")]
        assert died == [
            f"run.py: the dashboard (pid {dashboard.pid}) exited with code -9 (SIGKILL); stopping the feed server"
        ], log
        assert "Traceback" not in log, log
        _, alive = psutil.wait_procs(children, timeout=5.0)
        assert not alive, f"left behind: {alive}"
        assert not feed.is_running()
    finally:
        stop_process(process, also=children)
        output.close()
