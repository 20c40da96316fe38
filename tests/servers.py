"""Shared test helpers: an in-process feed server, the feed server as a subprocess, Chromium's settings.

Keep this API stable, other test packages (and the benchmark) import it:

- ``async with running_feed_server(**kwargs) as server``: a Feed on 127.0.0.1:0 (``server.address``);
- ``free_port()``: a free TCP port on 127.0.0.1 for a subprocess;
- ``child_env()``: the environment for a subprocess (feed_server.launch's, as run.py uses);
- ``start_feed_process(port, *args)``: ``python -m feed_server --port PORT *args`` from the repo root;
- ``wait_for_health(address, timeout)``: block until the gRPC health service answers SERVING;
- ``feed_process(*args)``: a serving feed process for a ``with`` block (its address);
- ``CHROMIUM``, ``CHROMIUM_FLAGS``: Debian's headless Chromium and the flags it needs here;
- ``open_raw_websocket(port, path)``: a WebSocket handshake on a socket that is never read again.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from feed_server.client.health import feed_serving
from feed_server.launch import REPO_ROOT, child_env, wait_ready
from feed_server.server.feed import Feed, FeedOptions
from tests.waiting import stop_process  # the one process stopper (feed_process uses it)

__all__ = [
    "CHROMIUM",
    "CHROMIUM_FLAGS",
    "REPO_ROOT",
    "child_env",
    "feed_process",
    "free_port",
    "open_raw_websocket",
    "running_feed_server",
    "start_feed_process",
    "wait_for_health",
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def running_feed_server(**kwargs: Any) -> AsyncIterator[Feed]:
    """A started Feed on 127.0.0.1 and a free port (unless given), stopped on exit."""
    kwargs.setdefault("host", "127.0.0.1")
    kwargs.setdefault("port", 0)
    server = Feed(FeedOptions(**kwargs))
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=0.5)


def start_feed_process(port: int, *args: str) -> subprocess.Popen[bytes]:
    """``python -m feed_server --host 127.0.0.1 --port PORT *args``, from the repo root, stdout/stderr piped.

    The caller must kill it (in a ``finally``).
    """
    return subprocess.Popen(
        [sys.executable, "-m", "feed_server", "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=REPO_ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for_health(address: str, timeout: float) -> None:
    """Block until the gRPC health service at ``address`` answers SERVING (StartupError after ``timeout``)."""
    wait_ready(f"feed at {address}", lambda: feed_serving(address), timeout)


@contextmanager
def feed_process(*args: str) -> Iterator[str]:
    """``python -m feed_server *args`` on a free port, serving; yields its address and stops it on the way out."""
    port = free_port()
    process = start_feed_process(port, *args)
    try:
        address = f"127.0.0.1:{port}"
        wait_for_health(address, 15.0)
        yield address
    finally:
        stop_process(process)


def open_raw_websocket(port: int, path: str) -> socket.socket:
    """A WebSocket handshake on a plain socket with a tiny receive buffer; the caller never reads after it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5.0)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(1)
        assert chunk, "connection closed during the handshake"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock
