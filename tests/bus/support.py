"""The bus tests' helpers: a real ``nats-server`` (Debian's) on a free 127.0.0.1 port, started and stopped."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import free_port, stop_process

NATS_SERVER = "/usr/sbin/nats-server"

needs_nats = pytest.mark.skipif(not Path(NATS_SERVER).exists(), reason=f"{NATS_SERVER} is missing (CI installs it)")


@dataclass
class NatsServer:
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or start again, on the same port) and wait until it accepts connections (bounded)."""
        self.process = subprocess.Popen(
            [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


@contextlib.contextmanager
def running_nats() -> Iterator[NatsServer]:
    """A nats-server on a free 127.0.0.1 port for the block (RuntimeError when Debian's binary is missing)."""
    if not Path(NATS_SERVER).exists():
        raise RuntimeError(f"{NATS_SERVER} is missing (apt-get install nats-server)")
    server = NatsServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
