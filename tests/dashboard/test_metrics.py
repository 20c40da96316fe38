"""The dashboard's Prometheus metrics (``GET /metrics``), scraped from a real dashboard process fed by a real feed
that injects faults, so that resynchronisations happen too."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from dashboard.metrics import DELAY_BUCKETS, METRIC_NAMES
from feed_server.client.stats import FAULT_REASONS
from feed_server.protocol.core import CORE
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from tests.dashboard.conftest import Dashboard, start_dashboard
from tests.dashboard.ws_helpers import recv_book
from tests.servers import feed_process
from tests.waiting import eventually

INSTRUMENTS = {spec.instrument_id for spec in DEFAULT_INSTRUMENTS}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def faulty_dashboard() -> Iterator[Dashboard]:
    """A dashboard on a feed with fault injection (1% of the messages), send timeout 1 s."""
    with feed_process("--seed", "5", "--rate", "200", "--fault-rate", "0.01") as address:
        running = start_dashboard(address, DASHBOARD_SEND_TIMEOUT="1")
        try:
            yield running
        finally:
            errors = running.stop()
            assert "Traceback" not in errors and " ERROR " not in errors, errors


def scrape(dashboard: Dashboard) -> Samples:
    """Every sample of the dashboard's ``/metrics``: (name, sorted labels) -> value."""
    response = httpx.get(f"{dashboard.http}/metrics", timeout=10.0)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for (n, labels), value in samples.items() if n == name}


def total(samples: Samples, name: str) -> float:
    return sum(value for (n, _), value in samples.items() if n == name)


async def scrape_until(dashboard: Dashboard, check: Callable[[Samples], bool], within: float) -> Samples:
    """Scrape ``/metrics`` until ``check`` holds (bounded); returns the samples that passed."""
    last: list[Samples] = [{}]

    async def passes() -> bool:
        last[0] = await asyncio.to_thread(scrape, dashboard)
        return check(last[0])

    await eventually(passes, within, lambda: f"{sorted(last[0].items())}", every=0.2)
    return last[0]


async def test_every_metric_is_served_in_the_prometheus_text_format(faulty_dashboard: Dashboard) -> None:
    samples = await scrape_until(faulty_dashboard, lambda s: s.get(("marketdata_feed_connected", ())) == 1, 15.0)
    names = {name for name, _ in samples}
    for name in METRIC_NAMES:
        assert name in names or f"{name}_count" in names, name
    assert set(by_label(samples, "marketdata_book_messages_total", "instrument")) == INSTRUMENTS
    resyncs = {dict(labels)["reason"] for (n, labels), _ in samples.items() if n == "marketdata_resyncs_total"}
    assert resyncs == set(FAULT_REASONS)
    assert set(by_label(samples, "marketdata_ws_clients_dropped_total", "reason")) == {"slow", "instrument_gone"}
    assert by_label(samples, "marketdata_core_info", "core") == {CORE: 1}  # the dashboard's, as this process's
    # /metrics is no page and no part of the API's schema.
    openapi = await asyncio.to_thread(httpx.get, f"{faulty_dashboard.http}/openapi.json", timeout=10.0)
    assert "/metrics" not in openapi.json()["paths"]


async def test_book_messages_are_counted_and_grow(faulty_dashboard: Dashboard) -> None:
    first = by_label(await asyncio.to_thread(scrape, faulty_dashboard), "marketdata_book_messages_total", "instrument")

    def grown(samples: Samples) -> bool:
        now = by_label(samples, "marketdata_book_messages_total", "instrument")
        return all(now[iid] > first.get(iid, 0) for iid in INSTRUMENTS)

    await scrape_until(faulty_dashboard, grown, 10.0)


async def test_resyncs_are_counted_by_instrument_and_reason_under_fault_injection(
    faulty_dashboard: Dashboard,
) -> None:
    samples = await scrape_until(faulty_dashboard, lambda s: total(s, "marketdata_resyncs_total") > 0, 30.0)
    counted = {labels: v for (n, labels), v in samples.items() if n == "marketdata_resyncs_total" and v > 0}
    for labels in counted:
        assert dict(labels)["instrument"] in INSTRUMENTS
        assert dict(labels)["reason"] in FAULT_REASONS


async def test_a_websocket_client_is_counted_while_open_and_its_messages_sent(faulty_dashboard: Dashboard) -> None:
    before = await scrape_until(faulty_dashboard, lambda s: s[("marketdata_ws_clients", ())] == 0, 10.0)
    sent = before[("marketdata_ws_messages_sent_total", ())]
    async with connect(faulty_dashboard.ws("AAPL", "depth=5&trades=1")) as ws:
        await recv_book(ws, 10.0, live=False)
        await recv_book(ws, 10.0, live=False)
        during = await scrape_until(faulty_dashboard, lambda s: s[("marketdata_ws_clients", ())] == 1, 10.0)
        assert during[("marketdata_ws_messages_sent_total", ())] >= sent + 2
    after = await scrape_until(faulty_dashboard, lambda s: s[("marketdata_ws_clients", ())] == 0, 10.0)
    assert after[("marketdata_ws_messages_sent_total", ())] >= during[("marketdata_ws_messages_sent_total", ())]


async def test_the_feed_to_dashboard_delay_histogram_has_observations(faulty_dashboard: Dashboard) -> None:
    name = "marketdata_feed_to_dashboard_delay_seconds"
    samples = await scrape_until(faulty_dashboard, lambda s: s.get((f"{name}_count", ()), 0) > 100, 15.0)
    buckets = {float(le): v for le, v in by_label(samples, f"{name}_bucket", "le").items()}
    assert sorted(buckets) == [*DELAY_BUCKETS, float("inf")]
    counts = [buckets[le] for le in sorted(buckets)]
    assert counts == sorted(counts), "buckets are cumulative"
    assert counts[-1] == samples[(f"{name}_count", ())]
    assert 0 < samples[(f"{name}_sum", ())] < counts[-1] * 10.0
    # On one machine at 200 events/s most messages arrive well within a second of their event time.
    assert buckets[1.0] >= 0.9 * counts[-1]
