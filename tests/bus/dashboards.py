"""Helpers for the tests of dashboards on NATS: feeds that publish (restartable on their own port), a dashboard on
the NATS server, and the books' state as the dashboard's REST API gives it, polled (bounded)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from tests.dashboard.conftest import Dashboard, start_dashboard
from tests.servers import free_port, start_feed_process, wait_for_health
from tests.waiting import stop_process

__all__ = [
    "PublishingFeed",
    "RestView",
    "dashboard_on",
]

T = TypeVar("T")


@dataclass
class PublishingFeed:
    """``python -m feed_server --publish URL *args`` on a fixed gRPC port, which the test may kill and start
    again with the same arguments."""

    nats_url: str
    args: tuple[str, ...]
    port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.processes[-1]

    def start(self) -> None:
        """Start it and wait (bounded) until its gRPC health service answers SERVING."""
        self.processes.append(start_feed_process(self.port, "--publish", self.nats_url, *self.args))
        wait_for_health(self.address, 15.0)

    def kill(self) -> None:
        """SIGKILL: no goodbye on NATS, its instruments simply fall silent."""
        self.process.kill()
        self.process.wait(5.0)

    def stop(self) -> None:
        for process in self.processes:
            stop_process(process)


@contextmanager
def dashboard_on(nats_url: str) -> Iterator[Dashboard]:
    """``python -m dashboard --feed-address nats://...``; stopped on the way out, and then its log must hold no
    traceback and no ERROR line."""
    dashboard = start_dashboard(nats_url)
    try:
        yield dashboard
    finally:
        log = dashboard.stop()
    assert "Traceback" not in log and " ERROR " not in log, log


class RestView:
    """The dashboard's books as its REST API gives them (depth 1): instrument id -> stale."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.client = httpx.Client(base_url=dashboard.http, timeout=5.0, trust_env=False)

    def close(self) -> None:
        self.client.close()

    def listed(self) -> list[str]:
        response = self.client.get("/api/instruments")
        if response.status_code != 200:
            return []
        return [item["instrument_id"] for item in response.json()]

    def stale(self, instrument_ids: Iterable[str]) -> dict[str, bool]:
        """Per instrument: whether its book is stale (a book the dashboard has no JSON for yet counts as stale)."""
        states = {}
        for instrument_id in instrument_ids:
            response = self.client.get(f"/api/book/{instrument_id}", params={"depth": "1"})
            states[instrument_id] = response.status_code != 200 or bool(response.json()["stale"])
        return states
