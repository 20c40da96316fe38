"""A real ``nats-server`` per test (tests/bus/support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.bus.support import NatsServer
from tests.servers import free_port


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
