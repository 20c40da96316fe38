"""The feed's Prometheus metrics: ``/metrics`` over HTTP, read from the engine when scraped.

``python -m feed_server --metrics-port N`` serves them on the gRPC ``--host``. The hot path pays nothing: the
engine and the fan-out keep plain counters they need anyway, and :class:`EngineCollector` reads them only when a
scrape comes (on the HTTP server's thread; it only reads ints). Each :class:`MetricsServer` has a registry of its
own, never prometheus_client's global one, so several feeds in one process (the tests) do not clash.

Metrics: ``marketdata_events_total{instrument}`` (counter: order events and heartbeats run, the instrument's
sequence), ``marketdata_messages_published_total`` (counter: messages built for subscribers, each built once
per subscribed depth), ``marketdata_subscribers`` (gauge: open Subscribe streams),
``marketdata_subscriber_resyncs_total`` (counter: slow subscribers' backlogs replaced with snapshots),
``marketdata_core_info{core}`` (gauge, 1: the book core the process runs, "compiled" or "python"),
``marketdata_engine_lag_seconds`` (gauge: how far behind the wall clock the engine was after its last slice) and
``marketdata_engine_behind_seconds_total`` (counter: how far the simulated-to-wall-time mapping has moved on
because the engine could not keep up; it only grows). With ``--publish`` (feed_server.server.nats_publisher),
also ``marketdata_bus_connected`` (gauge, 0/1: connected to the NATS server), ``marketdata_bus_reconnects_total``
(counter: reconnections after a loss), ``marketdata_bus_published_total`` (counter: messages handed to NATS),
``marketdata_bus_published_changes_total`` (counter: the level changes in them) and
``marketdata_bus_publish_errors_total`` (counter: messages NATS could not take while disconnected).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from feed_server.core_metric import CORE_METRIC, core_info
from feed_server.server.engine import Engine
from feed_server.server.nats_publisher import NatsPublisher

__all__ = ["BUS_METRIC_NAMES", "METRIC_NAMES", "BusCollector", "EngineCollector", "MetricsServer"]

logger = logging.getLogger(__name__)

METRIC_NAMES = (
    "marketdata_events_total",
    "marketdata_messages_published_total",
    "marketdata_subscribers",
    "marketdata_subscriber_resyncs_total",
    "marketdata_engine_lag_seconds",
    "marketdata_engine_behind_seconds_total",
    CORE_METRIC,
)


class EngineCollector(Collector):
    """Reads one engine's counters at scrape time (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        engine, fanout = self._engine, self._engine.fanout
        yield core_info()
        events = CounterMetricFamily(
            "marketdata_events_total",
            "Order events and heartbeats run (a replay: recorded messages played), per instrument.",
            labels=["instrument"],
        )
        for iid, count in engine.source.event_counts().items():
            events.add_metric([iid], count)
        yield events
        yield CounterMetricFamily(
            "marketdata_messages_published_total",
            "Messages built for subscribers (each built once per subscribed depth).",
            value=fanout.messages_published,
        )
        yield GaugeMetricFamily("marketdata_subscribers", "Open Subscribe streams.", value=fanout.registry.count)
        yield CounterMetricFamily(
            "marketdata_subscriber_resyncs_total",
            "Slow subscribers whose backlog was replaced with fresh snapshots.",
            value=fanout.resyncs,
        )
        yield GaugeMetricFamily(
            "marketdata_engine_lag_seconds",
            "How far behind the wall clock the engine was after its last slice (0: on time).",
            value=engine.lag_ns / 1e9,
        )
        yield CounterMetricFamily(
            "marketdata_engine_behind_seconds_total",
            "How far the simulated-to-wall-time mapping has moved on because the engine could not keep up.",
            value=engine.shifted_ns / 1e9,
        )


BUS_METRIC_NAMES = (
    "marketdata_bus_connected",
    "marketdata_bus_reconnects_total",
    "marketdata_bus_published_total",
    "marketdata_bus_published_changes_total",
    "marketdata_bus_publish_errors_total",
)


class BusCollector(Collector):
    """Reads a NATS publisher's state at scrape time."""

    def __init__(self, publisher: NatsPublisher) -> None:
        self._publisher = publisher

    def collect(self) -> Iterator[Metric]:
        publisher = self._publisher
        link = publisher.link
        yield GaugeMetricFamily(
            "marketdata_bus_connected",
            "1 while connected to the NATS server, 0 while reconnecting.",
            value=int(link is not None and link.connected),
        )
        yield CounterMetricFamily(
            "marketdata_bus_reconnects_total",
            "Reconnections to the NATS server after a loss.",
            value=link.reconnects if link is not None else 0,
        )
        yield CounterMetricFamily(
            "marketdata_bus_published_total", "Messages handed to NATS.", value=publisher.published
        )
        yield CounterMetricFamily(
            "marketdata_bus_published_changes_total",
            "Level changes in the update messages handed to NATS.",
            value=publisher.published_changes,
        )
        yield CounterMetricFamily(
            "marketdata_bus_publish_errors_total",
            "Messages NATS could not take (disconnected, its buffer full): consumers see a gap and resynchronise.",
            value=publisher.publish_errors,
        )


class MetricsServer:
    """``/metrics`` for one engine on ``host:port`` (port 0: any free port), on prometheus_client's HTTP server
    in a daemon thread: :meth:`start`, then ``await stop()``."""

    def __init__(self, engine: Engine, host: str, port: int, publisher: NatsPublisher | None = None) -> None:
        self.host = host
        self.port = port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(EngineCollector(engine))
        if publisher is not None:
            self.registry.register(BusCollector(publisher))
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind and serve; returns the bound port. Raises OSError (one line naming the address) when it cannot."""
        if self._httpd is not None:
            raise RuntimeError("metrics server already started")
        try:
            self._httpd, self._thread = start_http_server(self.port, self.host.strip("[]"), registry=self.registry)
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror or exc}") from None
        self.port = int(self._httpd.server_port)
        logger.info("metrics on http://%s:%d/metrics", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        """Stop serving and close the socket (idempotent). ``shutdown`` waits for the serving loop's next poll
        (up to half a second), so it runs in a worker thread."""
        httpd, self._httpd = self._httpd, None
        thread, self._thread = self._thread, None
        if httpd is None:
            return
        await asyncio.to_thread(httpd.shutdown)
        httpd.server_close()
        if thread is not None:
            await asyncio.to_thread(thread.join)
