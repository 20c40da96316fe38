"""The feed on NATS (``python -m feed_server --publish nats://...``) against a real nats-server: every message of
every instrument, verified by a plain NATS subscriber from a snapshot it requested; the same bytes as on gRPC;
snapshot and instrument-list requests; a second feed with the same instrument refused; an unreachable NATS a
one-line error; and a NATS server restarted on the same port, after which the feed publishes again by itself."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence

import grpc
import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from prometheus_client.parser import text_string_to_metric_families

from feed_server.bus.subjects import (
    ERROR_HEADER,
    INSTRUMENTS_SUBJECT,
    SESSION_HEADER,
    book_subject,
    snapshot_subject,
)
from feed_server.protocol.book import OrderBook
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.wire import apply_message
from tests.bus.support import NatsServer, needs_nats
from tests.servers import REPO_ROOT, child_env, feed_process, free_port
from tests.waiting import wait_until

pytestmark = needs_nats


async def snapshot(client: Client, instrument_id: str, depth: int = 100) -> pb.BookMessage:
    request = pb.SnapshotRequest(instrument_id=instrument_id, depth=depth).SerializeToString()
    answer = await client.request(snapshot_subject(instrument_id), request, timeout=5)
    assert not (answer.headers or {}).get(ERROR_HEADER), answer.headers
    return pb.BookMessage.FromString(answer.data)


async def collect(
    client: Client, instrument_ids: Sequence[str], seconds: float, subscribed: asyncio.Event | None = None
) -> dict[str, list[tuple[str, bytes]]]:
    """Every message published on the instruments' subjects for ``seconds``: (session header, bytes).

    ``subscribed`` is set once the subscriptions are in place on the server."""
    got: dict[str, list[tuple[str, bytes]]] = {iid: [] for iid in instrument_ids}

    async def on_message(msg: Msg) -> None:
        got[pb.BookMessage.FromString(msg.data).instrument_id].append(((msg.headers or {})[SESSION_HEADER], msg.data))

    subscriptions = [await client.subscribe(book_subject(iid), cb=on_message) for iid in instrument_ids]
    await client.flush()
    if subscribed is not None:
        subscribed.set()
    await asyncio.sleep(seconds)  # the window to collect in: what is published during it is the result
    for subscription in subscriptions:
        await subscription.unsubscribe()
    return got


async def test_every_message_is_published_once_at_full_depth_and_verifies(nats_server: NatsServer) -> None:
    with feed_process("--seed", "5", "--rate", "300", "--publish", nats_server.url) as address:
        client = await nats.connect(nats_server.url)
        try:
            async with asyncio.timeout(30):
                listing = await client.request(INSTRUMENTS_SUBJECT, b"", timeout=5)
                instruments = pb.ListInstrumentsResponse.FromString(listing.data)
                ids = [i.instrument_id for i in instruments.instruments]
                assert len(ids) == 7 and instruments.max_depth == 100
                assert listing.headers is not None
                session = listing.headers[SESSION_HEADER]
                subscribed = asyncio.Event()
                collecting = asyncio.create_task(collect(client, ids, 2.0, subscribed))
                async with asyncio.timeout(5):
                    await subscribed.wait()
                snapshots = {iid: await snapshot(client, iid) for iid in ids}
                got = await collecting
        finally:
            await client.close()
        assert all(s.session_id == session for s in snapshots.values())
        for iid in ids:
            book = OrderBook(iid, 100)
            apply_message(book, snapshots[iid])
            messages = [pb.BookMessage.FromString(data) for _, data in got[iid]]
            assert {s for s, _ in got[iid]} == {session}
            after = [m for m in messages if m.sequence > snapshots[iid].sequence]
            assert len(after) > 50, f"{iid}: {len(after)} messages"
            assert [m.sequence for m in after] == list(range(after[0].sequence, after[0].sequence + len(after)))
            for message in after:  # sequence, checksum and digest verified
                apply_message(book, message)
        # The same bytes as a gRPC subscriber at full depth receives, at every shared sequence.
        async with grpc.aio.insecure_channel(address) as channel:
            call = channel.unary_stream(
                "/marketdata.v1.MarketData/Subscribe",
                request_serializer=pb.SubscribeRequest.SerializeToString,
                response_deserializer=pb.SubscribeResponse.FromString,
            )(pb.SubscribeRequest(instrument_ids=["AAPL"], depth=100))
            client = await nats.connect(nats_server.url)
            try:
                async with asyncio.timeout(20):
                    collecting = asyncio.create_task(collect(client, ["AAPL"], 1.5))
                    streamed: dict[int, bytes] = {}
                    while not collecting.done():
                        item = await call.read()
                        assert item is not grpc.aio.EOF and item.session_id == session
                        streamed.update((m.sequence, m.SerializeToString()) for m in item.messages)
                    published = {pb.BookMessage.FromString(d).sequence: d for _, d in (await collecting)["AAPL"]}
            finally:
                call.cancel()
                await client.close()
        shared = set(streamed) & set(published)
        assert len(shared) > 50
        assert all(streamed[s] == published[s] for s in shared if s > min(streamed))  # (the first is a snapshot)


async def test_snapshot_requests_are_validated(nats_server: NatsServer) -> None:
    with feed_process("--instruments", "AAPL,BTC-USD", "--publish", nats_server.url):
        client = await nats.connect(nats_server.url)
        try:
            async with asyncio.timeout(20):
                small = await snapshot(client, "BTC-USD", 5)
                assert len(small.snapshot.bids) <= 5 and small.snapshot.reason == pb.SNAPSHOT_REASON_REQUEST
                request = pb.SnapshotRequest(instrument_id="AAPL", depth=500).SerializeToString()
                answer = await client.request(snapshot_subject("AAPL"), request, timeout=5)
                assert answer.headers is not None
                assert answer.headers[ERROR_HEADER] == "bad_request" and not answer.data  # the project's code
                assert "500" in answer.headers["Marketdata-Error-Message"]
                with pytest.raises(nats.errors.NoRespondersError):
                    await client.request(snapshot_subject("MSFT"), b"", timeout=2)  # not this feed's
        finally:
            await client.close()


def run_feed(*args: str, within: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "feed_server", "--port", str(free_port()), *args],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=within,
        check=False,
    )


def test_a_second_feed_publishing_the_same_instrument_is_refused(nats_server: NatsServer) -> None:
    with feed_process("--instruments", "AAPL,MSFT", "--publish", nats_server.url):
        done = run_feed("--instruments", "MSFT,ETH-USD", "--publish", nats_server.url)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m feed_server: error: MSFT already published"), lines
    assert "Traceback" not in done.stderr


def test_an_unreachable_nats_is_one_error_line(nats_server: NatsServer) -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    done = run_feed("--publish", url)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot connect to the NATS server at {url}" in lines[0], lines
    assert time.monotonic() - started < 20
    bad = run_feed("--publish", "http://127.0.0.1:4222")
    assert bad.returncode == 1 and "expected nats://HOST:PORT" in bad.stderr


def scrape(port: int) -> dict[str, float]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    text = opener.open(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


async def test_the_feed_publishes_again_after_nats_restarts(nats_server: NatsServer) -> None:
    metrics_port = free_port()
    with feed_process("--instruments", "AAPL", "--publish", nats_server.url, "--metrics-port", str(metrics_port)):
        assert scrape(metrics_port)["marketdata_bus_connected"] == 1
        nats_server.stop()
        wait_until(lambda: scrape(metrics_port)["marketdata_bus_connected"] == 0, 10.0, "the feed noticing NATS gone")
        nats_server.start()  # the same port
        wait_until(lambda: scrape(metrics_port)["marketdata_bus_connected"] == 1, 15.0, "the feed reconnecting")
        assert scrape(metrics_port)["marketdata_bus_reconnects_total"] == 1
        client = await nats.connect(nats_server.url)
        try:
            async with asyncio.timeout(10):
                got = await collect(client, ["AAPL"], 1.5)
        finally:
            await client.close()
        assert len(got["AAPL"]) > 10, "nothing published after the restart"
