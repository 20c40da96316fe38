"""A real ``nats-server`` per test (tests/bus/support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.bus.support import NatsServer, running_nats


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    with running_nats() as server:
        yield server
