"""The system under test: a feed server (with its Prometheus metrics) and a dashboard on free ports, both always
stopped on exit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from bench.feed_stream import feed_args
from bench.procs import Proc, free_port, started, wait_for_grpc_health, wait_for_http
from bench.stream_client import consume
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS

__all__ = ["INSTRUMENT_IDS", "Stack", "measure_change_rate", "running_stack"]

INSTRUMENT_IDS = [spec.instrument_id for spec in DEFAULT_INSTRUMENTS]


@dataclass(frozen=True, slots=True)
class Stack:
    feed: Proc
    dashboard: Proc
    feed_address: str
    http_base: str
    metrics_url: str  # the feed's /metrics

    @property
    def ws_base(self) -> str:
        return "ws" + self.http_base.removeprefix("http")


@contextlib.contextmanager
def running_stack(rate: float, seed: int = 1) -> Iterator[Stack]:
    """``python -m feed_server --rate --metrics-port`` and ``python -m dashboard`` on it, ready (books served) on
    entry."""
    feed_port, web_port, metrics_port = free_port(), free_port(), free_port()
    address = f"127.0.0.1:{feed_port}"
    with started("feed", feed_args(feed_port, rate, seed, metrics_port)) as feed:
        wait_for_grpc_health(feed, address, 15)
        dash_args = ["-m", "dashboard", "--feed-address", address, "--host", "127.0.0.1", "--port", str(web_port)]
        with started("dashboard", dash_args) as dashboard:
            base = f"http://127.0.0.1:{web_port}"
            wait_for_http(dashboard, f"{base}/api/book/{INSTRUMENT_IDS[0]}", 20, interval=0.1)
            yield Stack(feed, dashboard, address, base, f"http://127.0.0.1:{metrics_port}/metrics")


def measure_change_rate(address: str, seconds: float) -> float:
    """Level changes per second the feed publishes across all instruments (a full-depth subscriber counts)."""
    result = asyncio.run(consume(address, seconds, bare=True, depth=100))
    return float(result["changes_per_s"])
