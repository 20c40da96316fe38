"""gRPC server reflection on a real in-process feed: what ``grpcurl -plaintext HOST:PORT list`` and ``describe``
read, here through grpcio-reflection's own client; and the feed's ``/metrics`` still answers beside it."""

from __future__ import annotations

import asyncio
import urllib.request

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from prometheus_client.parser import text_string_to_metric_families

from feed_server.server.feed import SERVICE_NAME
from feed_server.server.metrics import METRIC_NAMES
from tests.servers import running_feed_server

EXPECTED = {"marketdata.v1.MarketData", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


def reflect(address: str) -> tuple[set[str], set[str]]:
    """(the services the server lists, the methods of the MarketData service) over reflection (blocking)."""
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=5)
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        service = DescriptorPool(database).FindServiceByName(SERVICE_NAME)
        return services, {method.name for method in service.methods}


def scrape_names(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


async def test_reflection_lists_the_services_and_describes_market_data() -> None:
    async with running_feed_server(rate=50, seed=1) as server:
        async with asyncio.timeout(15):
            services, methods = await asyncio.to_thread(reflect, server.address)
    assert services == EXPECTED
    assert {"ListInstruments", "Subscribe", "GetSnapshot"} <= methods


async def test_the_feeds_metrics_still_answer_with_reflection_on() -> None:
    async with running_feed_server(rate=50, seed=2, metrics_port=0) as server:
        assert server.metrics_port
        async with asyncio.timeout(15):
            services, _ = await asyncio.to_thread(reflect, server.address)
            names = await asyncio.to_thread(scrape_names, server.metrics_port)
    assert services == EXPECTED
    assert names == set(METRIC_NAMES)
