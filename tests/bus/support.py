"""The bus tests' helpers: a real ``nats-server`` (Debian's) on a free 127.0.0.1 port, started and stopped."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import free_port
from tests.waiting import stop_process, wait_until

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
        process = self.process

        def accepting() -> bool:
            assert process.poll() is None, f"nats-server on port {self.port} exited with code {process.returncode}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return False
            return True

        wait_until(accepting, 10.0, f"nats-server accepting connections on port {self.port}")

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
