"""The feed's Prometheus metrics (``--metrics-port``): scraped over HTTP from a real process and in-process."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.pb import market_data_pb2_grpc
from feed_server.server.metrics import METRIC_NAMES
from tests.servers import REPO_ROOT, child_env, free_port, running_feed_server, start_feed_process, wait_for_health

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample of ``http://127.0.0.1:PORT/metrics``: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def events(samples: Samples) -> dict[str, float]:
    return {
        dict(labels)["instrument"]: value
        for (name, labels), value in samples.items()
        if name == "marketdata_events_total"
    }


def value(samples: Samples, name: str) -> float:
    return samples[(name, ())]


def test_a_feed_process_serves_its_metrics_and_the_counters_grow():
    port, metrics_port = free_port(), free_port()
    process = start_feed_process(port, "--rate", "200", "--seed", "4", "--metrics-port", str(metrics_port))
    try:
        wait_for_health(f"127.0.0.1:{port}", timeout=10)
        first = scrape(metrics_port)
        assert {name for name, _ in first} == set(METRIC_NAMES)
        assert set(events(first)) == {spec.instrument_id for spec in DEFAULT_INSTRUMENTS}
        assert value(first, "marketdata_subscribers") == 0
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stream = market_data_pb2_grpc.MarketDataStub(channel).Subscribe(pb.SubscribeRequest(depth=10), timeout=15)
            next(stream)  # the snapshots: subscribed
            received = 0
            for item in stream:
                received += len(item.messages)
                if received >= 200:
                    break
            during = scrape(metrics_port)
            stream.cancel()
        assert value(during, "marketdata_subscribers") == 1
        assert value(during, "marketdata_messages_published_total") >= 200
        assert all(events(during)[iid] > count for iid, count in events(first).items()), (first, during)
        assert value(during, "marketdata_engine_lag_seconds") >= 0
        assert value(during, "marketdata_engine_behind_seconds_total") >= 0
        assert value(during, "marketdata_subscriber_resyncs_total") == 0
    finally:
        process.kill()
        process.wait(timeout=5)


def _feed_exit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "feed_server", "--host", "127.0.0.1", *args],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_metrics_port_in_use_is_one_error_line_and_exit_code_1():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        result = _feed_exit("--port", str(free_port()), "--metrics-port", str(busy))
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"python -m feed_server: error: cannot serve metrics on 127.0.0.1:{busy}: Address already in use"
    ], result.stderr


@pytest.mark.parametrize("args", [["0"], ["70000"], ["x"], ["50999", "--port", "50999"]], ids=str)
def test_a_bad_metrics_port_is_one_error_line_and_exit_code_1(args):
    result = _feed_exit("--metrics-port", *args)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "--metrics-port" in lines[0], lines


async def test_servers_in_one_process_keep_their_own_metrics_and_free_the_port_on_stop():
    async with running_feed_server(rate=100, seed=1, metrics_port=0) as one:
        async with running_feed_server(rate=100, seed=2, metrics_port=0) as two:
            assert one.metrics_port and two.metrics_port and one.metrics_port != two.metrics_port
            await asyncio.sleep(0.3)
            first, second = await asyncio.gather(
                asyncio.to_thread(scrape, one.metrics_port), asyncio.to_thread(scrape, two.metrics_port)
            )
            assert {name for name, _ in first} == {name for name, _ in second} == set(METRIC_NAMES)
            port = two.metrics_port
        with pytest.raises(urllib.error.URLError):  # stopped: nothing listens there any more
            await asyncio.to_thread(scrape, port)
        assert sum(events(await asyncio.to_thread(scrape, one.metrics_port)).values()) > 0
