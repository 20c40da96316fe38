"""The dashboard's Prometheus metrics: ``GET /metrics`` on the dashboard's own port, read when scraped.

Like the feed's (feed_server/server/metrics.py), the hot path pays almost nothing: :class:`DashboardCollector`
reads counters the subscriber, its books and the WebSocket hub keep anyway, only when a scrape comes. The one
thing measured per message is the delay histogram: :class:`DelayHistogram` is a subscriber listener that adds one
bucket count per applied message (a clock read and a bisect; no lock, since the listener and the ``/metrics``
handler both run on the event loop). Each :func:`install_metrics` has a registry of its own, never
prometheus_client's global one.

Metrics: ``marketdata_book_messages_total{instrument}`` (counter: feed messages applied to the book, heartbeats
and snapshots included), ``marketdata_resyncs_total{instrument,reason}`` (counter: faults that made the book
stale and resynchronise from a snapshot, by :data:`FAULT_REASONS`), ``marketdata_feed_connected`` (gauge, 0/1:
the subscriber is streaming from the feed), ``marketdata_ws_clients`` (gauge: open JSON WebSocket clients),
``marketdata_ws_messages_sent_total`` (counter: book and trade messages sent to them),
``marketdata_ws_clients_dropped_total{reason}`` (counter: clients ended by the dashboard: ``slow``, a flush
blocked past the send timeout; ``instrument_gone``, the feed no longer lists the instrument) and
``marketdata_feed_to_dashboard_delay_seconds`` (histogram: the wall clock when the dashboard applied a message
minus the message's ``event_time_ns``).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator, Sequence

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from dashboard.api.fanout import MarketDataHub
from dashboard.bridge import FeedBridge
from feed_server.client.keeper import ConnectionState, Subscriber
from feed_server.client.stats import FAULT_REASONS
from feed_server.core_metric import CORE_METRIC, core_info
from feed_server.protocol.book import Trade

__all__ = ["DELAY_BUCKETS", "METRICS_PATH", "METRIC_NAMES", "DashboardCollector", "DelayHistogram", "install_metrics"]

METRICS_PATH = "/metrics"

METRIC_NAMES = (
    "marketdata_book_messages_total",
    "marketdata_resyncs_total",
    "marketdata_feed_connected",
    "marketdata_ws_clients",
    "marketdata_ws_messages_sent_total",
    "marketdata_ws_clients_dropped_total",
    "marketdata_feed_to_dashboard_delay_seconds",
    CORE_METRIC,
)

DELAY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # seconds; +Inf is implied


class DelayHistogram:
    """Feed-to-dashboard delay of each applied message, counted into DELAY_BUCKETS. Register it as a subscriber
    listener; a notification without a new applied message (a stale flip) is not counted, and a batch applied at
    once (a snapshot and the messages buffered behind it) counts once, with the last message's event time."""

    def __init__(self, subscriber: Subscriber) -> None:
        self._books = subscriber.books
        self._seen: dict[str, int] = {}  # per instrument: messages_applied at the last observation
        self.counts = [0] * (len(DELAY_BUCKETS) + 1)  # per bucket (not cumulative), the last one +Inf
        self.total = 0.0  # the sum of the observed delays, seconds

    def __call__(self, instrument_id: str, trades: Sequence[Trade]) -> None:
        ibook = self._books.get(instrument_id)
        if ibook is None or not ibook.last_event_time_ns:
            return
        applied = ibook.messages_applied
        if self._seen.get(instrument_id) == applied:
            return
        self._seen[instrument_id] = applied
        delay = max(0.0, (time.time_ns() - ibook.last_event_time_ns) / 1e9)
        self.counts[bisect.bisect_left(DELAY_BUCKETS, delay)] += 1
        self.total += delay

    def family(self) -> HistogramMetricFamily:
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip((*map(str, DELAY_BUCKETS), "+Inf"), self.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        return HistogramMetricFamily(
            "marketdata_feed_to_dashboard_delay_seconds",
            "Wall clock when the dashboard applied a feed message minus the message's event_time_ns.",
            buckets=buckets,
            sum_value=self.total,
        )


class DashboardCollector(Collector):
    """Reads the bridge's subscriber and the hub's counters at scrape time (see the module docstring)."""

    def __init__(self, bridge: FeedBridge, hub: MarketDataHub, delay: DelayHistogram) -> None:
        self._bridge = bridge
        self._hub = hub
        self._delay = delay

    def collect(self) -> Iterator[Metric]:
        subscriber, hub = self._bridge.subscriber, self._hub
        books = list(subscriber.books.items())
        yield core_info()
        messages = CounterMetricFamily(
            "marketdata_book_messages_total",
            "Feed messages applied to the instrument's book (heartbeats and snapshots included).",
            labels=["instrument"],
        )
        for iid, ibook in books:
            messages.add_metric([iid], ibook.messages_applied)
        yield messages
        resyncs = CounterMetricFamily(
            "marketdata_resyncs_total",
            "Faults that made the instrument's book stale and resynchronise from a snapshot, by kind.",
            labels=["instrument", "reason"],
        )
        faults = dict.fromkeys(((iid, reason) for iid, _ in books for reason in FAULT_REASONS), 0)
        faults.update(subscriber.stats.faults_by_instrument)
        for (iid, reason), count in sorted(faults.items()):
            resyncs.add_metric([iid, reason], count)
        yield resyncs
        connected = subscriber.state is ConnectionState.LIVE
        yield GaugeMetricFamily(
            "marketdata_feed_connected", "1 while the dashboard's subscriber streams from the feed, else 0.",
            value=int(connected),
        )
        yield GaugeMetricFamily("marketdata_ws_clients", "Open JSON WebSocket clients.", value=hub.connections)
        yield CounterMetricFamily(
            "marketdata_ws_messages_sent_total", "Book and trade messages sent to JSON WebSocket clients.",
            value=hub.messages_sent,
        )
        dropped = CounterMetricFamily(
            "marketdata_ws_clients_dropped_total",
            "JSON WebSocket clients ended by the dashboard: slow (a send blocked past the send timeout) or "
            "instrument_gone (the feed no longer lists the instrument).",
            labels=["reason"],
        )
        dropped.add_metric(["slow"], hub.dropped_slow)
        dropped.add_metric(["instrument_gone"], hub.dropped_gone)
        yield dropped
        yield self._delay.family()


def install_metrics(app: FastAPI, bridge: FeedBridge, hub: MarketDataHub) -> CollectorRegistry:
    """Serve ``GET /metrics`` (Prometheus text format, left out of the OpenAPI schema) on ``app`` for ``bridge``
    and ``hub``; returns the registry."""
    registry = CollectorRegistry(auto_describe=False)
    delay = DelayHistogram(bridge.subscriber)
    bridge.subscriber.add_listener(delay)
    registry.register(DashboardCollector(bridge, hub, delay))

    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route(METRICS_PATH, metrics, methods=["GET"], include_in_schema=False)
    return registry
