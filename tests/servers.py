"""Shared test helpers: an in-process feed server, and the feed server as a subprocess.

Keep this API stable, other test packages import it:

- ``async with running_feed_server(**kwargs) as server``: a FeedServer on 127.0.0.1:0 (``server.address``);
- ``free_port()``: a free TCP port on 127.0.0.1 for a subprocess;
- ``child_env()``: the environment for a subprocess (no PYTEST_* variables, PYTHONUNBUFFERED=1);
- ``start_feed_process(port, *args)``: ``python -m feed_server --port PORT *args`` from the repo root;
- ``wait_for_health(address, timeout)``: block until the gRPC health service answers SERVING.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.procs import child_env, free_port
from feed_server.server.grpc_server import FeedServer

__all__ = [
    "REPO_ROOT",
    "child_env",
    "free_port",
    "open_raw_websocket",
    "running_feed_server",
    "start_feed_process",
    "wait_for_health",
]

REPO_ROOT = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def running_feed_server(**kwargs: Any) -> AsyncIterator[FeedServer]:
    """A started FeedServer on 127.0.0.1 and a free port (unless given), stopped on exit."""
    kwargs.setdefault("host", "127.0.0.1")
    kwargs.setdefault("port", 0)
    server = FeedServer(**kwargs)
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
    """Poll the gRPC health service at ``address`` until it answers SERVING; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"feed at {address} not healthy after {timeout} s: {last_error}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=min(1.0, remaining))
            except grpc.RpcError as exc:
                last_error = str(exc.code())
            else:
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last_error = f"status {reply.status}"
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


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
