"""The NATS consumer (feed_server.client.nats_transport) against a real nats-server and real in-process feeds: its
books equal a gRPC subscriber's at every shared sequence (full depth and depth 5, two consumers at once), injected
faults on the published stream are detected and repaired, sharded feeds go stale and come back alone, a NATS
restart stales then revives every book, and the first connection's errors are the right FeedErrors."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence

import pytest

from feed_server.client.grpc_transport import FeedSubscriber
from feed_server.client.keeper import ConnectionState, Subscriber
from feed_server.client.nats_transport import BusSubscriber
from feed_server.protocol.book import Level, Trade
from feed_server.protocol.errors import FeedUnavailable, UnknownInstrument
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec
from tests.bus.support import NatsServer, needs_nats
from tests.client.support import eventually, running
from tests.servers import feed_process, free_port, running_feed_server

pytestmark = needs_nats

Seen = tuple[int, int, tuple[Level, ...], tuple[Level, ...]]  # checksum, digest, top 5 bids, top 5 asks


def specs(*ids: str) -> list[InstrumentSpec]:
    return [spec for spec in DEFAULT_INSTRUMENTS if spec.instrument_id in ids]


class Recorder:
    """Per instrument, at every listener call on a live book: sequence -> (checksum, digest, top 5 levels)."""

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        self.seen: dict[str, dict[int, Seen]] = defaultdict(dict)
        subscriber.add_listener(self.on_book)

    def on_book(self, instrument_id: str, trades: Sequence[Trade]) -> None:
        entry = self.subscriber.books[instrument_id]
        book = entry.book
        if entry.stale or book.sequence is None:
            return
        self.seen[instrument_id][book.sequence] = (
            book.checksum(),
            book.digest(),
            tuple(book.bids(5)),
            tuple(book.asks(5)),
        )


def agree(a: Recorder, b: Recorder, instrument_ids: Sequence[str], least: int, *, top_only: bool = False) -> int:
    """Assert both saw the same book at every sequence both saw (at least ``least`` per instrument)."""
    total = 0
    for iid in instrument_ids:
        shared = a.seen[iid].keys() & b.seen[iid].keys()
        assert len(shared) >= least, f"{iid}: only {len(shared)} shared sequences"
        for sequence in shared:
            mine, theirs = a.seen[iid][sequence], b.seen[iid][sequence]
            assert (mine[2:] if top_only else mine) == (theirs[2:] if top_only else theirs), f"{iid} seq {sequence}"
        total += len(shared)
    return total


def all_live(subscriber: Subscriber, instrument_ids: Sequence[str]) -> bool:
    return all(iid in subscriber.books and not subscriber.books[iid].stale for iid in instrument_ids)


async def test_bus_consumers_agree_with_a_grpc_subscriber_at_every_shared_sequence(nats_server: NatsServer) -> None:
    async with running_feed_server(seed=3, rate=100.0, publish_url=nats_server.url) as server:
        grpc_sub = FeedSubscriber(server.address, depth=100)
        bus_a, bus_b = BusSubscriber(nats_server.url), BusSubscriber(nats_server.url)
        shallow = BusSubscriber(nats_server.url, depth=5)
        recorders = [Recorder(s) for s in (grpc_sub, bus_a, bus_b, shallow)]
        async with running(grpc_sub), running(bus_a), running(bus_b), running(shallow):
            for subscriber in (grpc_sub, bus_a, bus_b, shallow):
                await subscriber.wait_live(timeout=10)
            await asyncio.sleep(3.0)
            for subscriber in (grpc_sub, bus_a, bus_b, shallow):
                assert subscriber.state is ConnectionState.LIVE and subscriber.problem is None
    ids = [spec.instrument_id for spec in DEFAULT_INSTRUMENTS]
    assert sorted(bus_a.books) == sorted(ids) == sorted(shallow.books)
    expected = int(3.0 * 100 * 0.5)  # half the messages of the 3 s at least, per instrument
    grpc_rec, a_rec, b_rec, shallow_rec = recorders
    agree(a_rec, grpc_rec, ids, expected)
    agree(b_rec, grpc_rec, ids, expected)
    agree(a_rec, b_rec, ids, expected)
    agree(shallow_rec, grpc_rec, ids, expected, top_only=True)  # the depth-5 consumer's top 5 levels
    for bus in (bus_a, bus_b, shallow):
        stats = bus.stats
        assert stats.gaps == stats.checksum_errors == stats.digest_errors == stats.invalid == 0, stats
        assert stats.resyncs == 0 and stats.watchdog_timeouts == 0
    assert all(shallow.books[iid].book.depth == 100 for iid in ids)  # kept at the published depth, verified there


EXPECTED_FAULTS = {
    "drop": "gaps",
    "duplicate": "duplicates",
    "reorder": "gaps",
    "corrupt": "checksum_errors",
    "deep": "digest_errors",
}


@pytest.mark.parametrize("kind", list(EXPECTED_FAULTS))
async def test_faults_on_the_published_stream_are_detected_and_repaired(nats_server: NatsServer, kind: str) -> None:
    ids = ["AAPL", "BTC-USD", "EUR-USD"]
    async with running_feed_server(
        seed=8, rate=150.0, instruments=specs(*ids), fault_rate=0.02, fault_kinds=[kind], publish_url=nats_server.url
    ) as server:
        # (The gRPC subscriber's own stream is faulted too: it repairs its book as well.)
        grpc_sub = FeedSubscriber(server.address, depth=100, resync_backoff_initial=0.001, resync_backoff_max=0.002)
        bus = BusSubscriber(nats_server.url, log_interval=0, resync_backoff_initial=0.001, resync_backoff_max=0.002)
        grpc_rec, bus_rec = Recorder(grpc_sub), Recorder(bus)
        async with running(grpc_sub), running(bus):
            await bus.wait_live(timeout=10)
            counter = EXPECTED_FAULTS[kind]
            await eventually(lambda: getattr(bus.stats, counter) >= 3, 15)
            await bus.wait_live(timeout=5)  # every book whole again after its faults
            repaired = {iid: bus.books[iid].book.sequence or 0 for iid in ids}
            await grpc_sub.wait_live(timeout=5)
            await asyncio.sleep(1.0)
            await bus.wait_live(timeout=5)
    stats = bus.stats
    assert getattr(stats, counter) >= 3, stats
    if kind != "duplicate":
        assert stats.resyncs >= 1, stats
    else:
        assert stats.gaps == stats.checksum_errors == stats.digest_errors == 0, stats  # ignored, nothing to repair
    assert stats.watchdog_timeouts == 0 and stats.unexpected_errors == 0, stats
    agree(bus_rec, grpc_rec, ids, 50)  # every book it showed live was the feed's
    for iid in ids:  # and the repaired books went on matching
        later = [seq for seq in bus_rec.seen[iid].keys() & grpc_rec.seen[iid].keys() if seq > repaired[iid]]
        assert len(later) >= 20, f"{iid}: {len(later)} shared sequences after the repair"


async def test_a_consumer_that_falls_behind_loses_messages_as_gaps_and_repairs_them(nats_server: NatsServer) -> None:
    ids = ["AAPL", "BTC-USD", "EUR-USD"]
    # The feed in a process of its own: only the consumer stalls.
    args = ("--seed", "5", "--rate", "300", "--instruments", ",".join(ids), "--publish", nats_server.url)
    with feed_process(*args) as address:
        grpc_sub = FeedSubscriber(address, depth=100)
        bus = BusSubscriber(nats_server.url, pending_limit=20, resync_backoff_initial=0.001, resync_backoff_max=0.002)
        grpc_rec, bus_rec = Recorder(grpc_sub), Recorder(bus)
        async with running(grpc_sub), running(bus):
            await bus.wait_live(timeout=10)
            await grpc_sub.wait_live(timeout=10)
            before = bus.stats.gaps
            time.sleep(0.5)  # noqa: ASYNC251 (on purpose: the process stalls, its NATS messages pile up past 20)
            await eventually(lambda: bus.stats.gaps > before, 10)
            await bus.wait_live(timeout=10)
            repaired = {iid: bus.books[iid].book.sequence or 0 for iid in ids}
            await asyncio.sleep(1.0)
            await bus.wait_live(timeout=5)
    assert bus.stats.resyncs >= 1 and bus.stats.watchdog_timeouts == 0, bus.stats  # the stall is no silence
    agree(bus_rec, grpc_rec, ids, 50)
    for iid in ids:
        later = [seq for seq in bus_rec.seen[iid].keys() & grpc_rec.seen[iid].keys() if seq > repaired[iid]]
        assert len(later) >= 20, f"{iid}: {len(later)} shared sequences after the repair"


async def test_sharded_feeds_stale_and_return_alone(nats_server: NatsServer) -> None:
    first_ids, second_ids = ["AAPL", "MSFT"], ["BTC-USD", "ETH-USD"]
    options = {"rate": 50.0, "publish_url": nats_server.url}
    async with running_feed_server(seed=1, instruments=specs(*first_ids), **options):
        second = running_feed_server(seed=2, instruments=specs(*second_ids), **options)
        await second.__aenter__()
        stopped = False
        try:
            bus = BusSubscriber(nats_server.url)
            first_stale: list[str] = []

            def watch_first(instrument_id: str, trades: Sequence[Trade]) -> None:
                if instrument_id in first_ids and bus.books[instrument_id].stale:
                    first_stale.append(instrument_id)

            async with running(bus):
                await bus.wait_live(timeout=10)
                assert sorted(bus.books) == sorted(first_ids + second_ids)
                bus.add_listener(watch_first)
                sessions = bus.stats.sessions
                await second.__aexit__(None, None, None)
                stopped = True
                took = await eventually(lambda: all(bus.books[iid].stale for iid in second_ids), 3.0)
                assert took < 3.0
                assert all_live(bus, first_ids) and not first_stale
                assert "no message" in (bus.books["BTC-USD"].stale_reason or "")
                async with running_feed_server(seed=5, instruments=specs(*second_ids), **options):
                    await eventually(lambda: all_live(bus, second_ids), 10.0)
                    await bus.wait_live(timeout=5)
                    assert bus.stats.sessions >= sessions + len(second_ids)  # a new session per instrument
                    assert {bus.books[iid].session_id for iid in second_ids}.isdisjoint(
                        {bus.books[iid].session_id for iid in first_ids}
                    )
                assert not first_stale, first_stale  # the other shard never went stale
                assert bus.stats.reconnects == 0
        finally:
            if not stopped:
                await second.__aexit__(None, None, None)


async def test_a_feed_started_later_adds_its_instruments(nats_server: NatsServer) -> None:
    async with running_feed_server(rate=50.0, instruments=specs("AAPL"), publish_url=nats_server.url):
        bus = BusSubscriber(nats_server.url)
        async with running(bus):
            await bus.wait_live(timeout=10)
            assert sorted(bus.books) == ["AAPL"]
            async with running_feed_server(rate=50.0, instruments=specs("BTC-USD"), publish_url=nats_server.url):
                await eventually(lambda: all_live(bus, ["AAPL", "BTC-USD"]), 8.0)  # (listed again within 2 s)
            assert sorted(bus.instruments) == ["AAPL", "BTC-USD"] and bus.stats.reconnects == 0


async def test_a_nats_restart_stales_every_book_then_they_return(nats_server: NatsServer) -> None:
    async with running_feed_server(
        seed=2, rate=50.0, instruments=specs("AAPL", "ETH-USD"), publish_url=nats_server.url
    ):
        bus = BusSubscriber(nats_server.url)
        async with running(bus):
            await bus.wait_live(timeout=10)
            nats_server.stop()
            await eventually(lambda: all(entry.stale for entry in bus.books.values()), 5.0)
            assert bus.problem is not None and "NATS" in bus.problem
            nats_server.start()  # the same port
            await bus.wait_live(timeout=10)
            assert bus.problem is None and bus.state is ConnectionState.LIVE
            sequence = bus.books["AAPL"].book.sequence
            await eventually(lambda: bus.books["AAPL"].book.sequence != sequence, 3.0)  # flowing again
            assert all_live(bus, ["AAPL", "ETH-USD"])


async def test_an_unknown_instrument_is_raised(nats_server: NatsServer) -> None:
    async with running_feed_server(rate=20.0, instruments=specs("AAPL"), publish_url=nats_server.url):
        bus = BusSubscriber(nats_server.url, ["XYZ"], reconnect=False)
        with pytest.raises(UnknownInstrument, match="XYZ"):
            async with asyncio.timeout(10):
                await bus.run()


@pytest.mark.parametrize("instrument_ids", [["AAPL"], []])
async def test_a_nats_without_a_feed_is_unavailable(nats_server: NatsServer, instrument_ids: list[str]) -> None:
    bus = BusSubscriber(nats_server.url, instrument_ids, reconnect=False)
    with pytest.raises(FeedUnavailable, match="no feed publishes"):  # (NATS's "no responders" is no listing)
        async with asyncio.timeout(10):
            await bus.run()


async def test_an_unreachable_nats_is_unavailable_quickly() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    bus = BusSubscriber(url, ["AAPL"], reconnect=False)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(FeedUnavailable, match=url):
        async with asyncio.timeout(10):
            await bus.run()
    assert loop.time() - start < 5.0
    assert bus.state is ConnectionState.STOPPED
