"""FeedSubscriber against real feed servers on 127.0.0.1: live books, injected faults, restarts, cuts, errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc
import grpc.aio
import pytest

from feed_server.client.grpc_transport import FeedSubscriber
from feed_server.client.keeper import ConnectionState, Subscriber
from feed_server.client.rpc import list_instruments
from feed_server.protocol.book import Trade
from feed_server.protocol.checksum import compute_checksum
from feed_server.protocol.errors import BadRequest, Code, FeedUnavailable, UnknownInstrument
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.pb import market_data_pb2_grpc
from feed_server.protocol.wire import heartbeat_message, instrument_to_pb, snapshot_message
from feed_server.server.feed import Feed, FeedOptions
from tests.client.support import eventually, running
from tests.servers import free_port, running_feed_server, start_feed_process, wait_for_health
from tests.truth import TruthCursor

SPECS = {spec.instrument_id: spec for spec in DEFAULT_INSTRUMENTS}
Levels = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]


@dataclass
class Record:
    instrument_id: str
    session_id: str | None
    sequence: int | None
    stale: bool
    levels: Levels


class Recorder:
    """A listener that records what every call exposes: the book as it is at that call, and whether it is stale."""

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        self.records: list[Record] = []
        self.trades = 0
        subscriber.add_listener(self)

    def __call__(self, instrument_id: str, trades: Sequence[Trade]) -> None:
        entry = self.subscriber.books[instrument_id]
        book = entry.book
        self.trades += len(trades)
        self.records.append(
            Record(
                instrument_id,
                self.subscriber.session_id,
                book.sequence,
                entry.stale,
                (tuple(book.bids()), tuple(book.asks())),
            )
        )

    def live_records(self) -> list[Record]:
        return [r for r in self.records if not r.stale]


def assert_records_true(records: list[Record], seed: int, rate: float, depth: int) -> int:
    """Every record (of one feed session) is the server's true book (top ``depth`` per side) after a whole number
    of events, later sequences never earlier states (tests/truth.py); returns how many were checked."""
    checked = 0
    for instrument_id in {r.instrument_id for r in records}:
        truth = TruthCursor(SPECS[instrument_id], seed, rate, depth)
        for record in sorted((r for r in records if r.instrument_id == instrument_id), key=lambda r: r.sequence or 0):
            assert record.sequence is not None
            truth.seek(*record.levels, f"the book at sequence {record.sequence}")
            checked += 1
    return checked


def state_of(subscriber: Subscriber) -> ConnectionState:
    """The subscriber's state now (a call, so that type checkers do not narrow it across awaits)."""
    return subscriber.state


async def test_books_go_live_and_match_the_server() -> None:
    seed, rate, depth = 3, 200.0, 20
    async with running_feed_server(seed=seed, rate=rate) as server:
        subscriber = FeedSubscriber(server.address, depth=depth, seed=1)
        recorder = Recorder(subscriber)
        async with running(subscriber):
            await subscriber.wait_live(timeout=5)
            assert subscriber.state is ConnectionState.LIVE
            assert subscriber.session_id == server.session_id
            assert set(subscriber.instruments) == set(SPECS)
            assert set(subscriber.books) == set(SPECS)
            await asyncio.sleep(1.0)
            assert all(not entry.stale for entry in subscriber.books.values())
    stats = subscriber.stats
    assert state_of(subscriber) is ConnectionState.STOPPED
    assert all(entry.stale for entry in subscriber.books.values())  # stopped: nothing is served as live
    assert stats.gaps == stats.checksum_errors == stats.crossed == stats.invalid == stats.duplicates == 0
    assert stats.messages > 7 * rate * 0.5
    assert recorder.trades > 0
    assert any(entry.trades for entry in subscriber.books.values())
    checked = assert_records_true(recorder.live_records(), seed, rate, depth)
    assert checked > 7 * rate * 0.5


async def test_a_subset_at_a_small_depth() -> None:
    seed, rate = 5, 100.0
    async with running_feed_server(seed=seed, rate=rate) as server:
        subscriber = FeedSubscriber(server.address, ["ES-Z6", "EUR-USD"], depth=3)
        recorder = Recorder(subscriber)
        async with running(subscriber):
            await subscriber.wait_live(timeout=5)
            assert set(subscriber.books) == {"ES-Z6", "EUR-USD"}
            assert len(subscriber.instruments) == len(SPECS)  # every instrument is known, two are subscribed
            await asyncio.sleep(0.5)
            for entry in subscriber.books.values():
                assert len(entry.book.bids()) <= 3 and len(entry.book.asks()) <= 3
    assert assert_records_true(recorder.live_records(), seed, rate, 3) > 50


async def test_injected_faults_are_detected_and_repaired_and_never_served(caplog: pytest.LogCaptureFixture) -> None:
    seed, rate, depth = 11, 300.0, 10
    caplog.set_level(logging.WARNING, logger="feed_server.client.subscriber")
    async with running_feed_server(seed=seed, rate=rate, fault_rate=0.05) as server:
        # Resyncs at once and every fault logged: this test is about what is served (pacing: test_pacing.py).
        subscriber = FeedSubscriber(
            server.address, depth=depth, seed=2, resync_backoff_initial=0.001, resync_backoff_max=0.002, log_interval=0
        )
        recorder = Recorder(subscriber)
        async with running(subscriber):
            await subscriber.wait_live(timeout=5)
            await eventually(lambda: subscriber.stats.resyncs >= 5 and subscriber.stats.messages >= 2000, 20)
            await subscriber.wait_live(timeout=5)  # every instrument whole again after its faults
            assert subscriber.state is ConnectionState.LIVE
    stats = subscriber.stats
    assert stats.gaps > 0 and stats.checksum_errors > 0 and stats.duplicates > 0 and stats.resyncs >= 5
    assert stats.digest_errors > 0  # the 'deep' faults: a level beyond the checksum's top 10
    assert stats.sessions == 1 and stats.reconnects == 0  # faults were repaired without reconnecting
    # Every book exposed as live, at every listener call, was the server's true book at its sequence.
    checked = assert_records_true(recorder.live_records(), seed, rate, depth)
    assert checked > 1500
    # Staleness was visible to listeners: each fault flipped its instrument to stale.
    assert sum(1 for r in recorder.records if r.stale) >= stats.resyncs
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "resynchronising" in r.getMessage()]
    assert warnings and all(any(iid in w.getMessage() for iid in SPECS) for w in warnings)
    assert len(warnings) == stats.gaps + stats.checksum_errors + stats.digest_errors + stats.crossed + stats.invalid


async def test_restart_on_the_same_port_goes_stale_then_live_with_the_new_session() -> None:
    port = free_port()
    first = Feed(FeedOptions(host="127.0.0.1", port=port, seed=1, rate=100.0))
    await first.start()
    subscriber = FeedSubscriber(
        f"127.0.0.1:{port}",
        ["AAPL", "BTC-USD"],
        depth=10,
        heartbeat_timeout=1.0,
        backoff_initial=0.05,
        backoff_max=0.2,
        seed=3,
    )
    recorder = Recorder(subscriber)
    second: Feed | None = None
    try:
        async with running(subscriber):
            await subscriber.wait_live(timeout=5)
            old_session = subscriber.session_id
            assert old_session == first.session_id
            await first.stop(grace=0.1)
            await eventually(
                lambda: (
                    subscriber.state is ConnectionState.RECONNECTING
                    and all(entry.stale for entry in subscriber.books.values())
                ),
                2,
            )
            await asyncio.sleep(0.3)  # a few failed attempts while nothing listens
            assert all(entry.stale for entry in subscriber.books.values())
            second = Feed(FeedOptions(host="127.0.0.1", port=port, seed=2, rate=100.0))
            await second.start()
            await subscriber.wait_live(timeout=5)
            assert subscriber.state is ConnectionState.LIVE
            assert subscriber.session_id == second.session_id != old_session
            await asyncio.sleep(0.3)
    finally:
        await first.stop(grace=0.1)
        if second is not None:
            await second.stop(grace=0.1)
    stats = subscriber.stats
    assert stats.sessions == 2 and stats.reconnects >= 1
    # Each session's live books are that server's truth (the second restarted its sequences from 1).
    assert assert_records_true([r for r in recorder.live_records() if r.session_id == old_session], 1, 100.0, 10)
    second_records = [r for r in recorder.live_records() if r.session_id == subscriber.session_id]
    assert second_records and min(r.sequence or 0 for r in second_records) < 100
    assert assert_records_true(second_records, 2, 100.0, 10)


class SilentFeed(market_data_pb2_grpc.MarketDataServicer):  # type: ignore[misc]
    """A real gRPC server that sends one snapshot per stream and then nothing: a connection gone quiet."""

    def __init__(self) -> None:
        self.streams = 0

    async def ListInstruments(self, request: pb.ListInstrumentsRequest, context: object) -> pb.ListInstrumentsResponse:
        return pb.ListInstrumentsResponse(instruments=[instrument_to_pb(SPECS["AAPL"])])

    async def Subscribe(self, request: pb.SubscribeRequest, context: object) -> AsyncIterator[pb.SubscribeResponse]:
        self.streams += 1
        bids, asks = [(100, 1)], [(101, 1)]
        message = snapshot_message("AAPL", 1, 0, compute_checksum(bids, asks), bids, asks)
        yield pb.SubscribeResponse(session_id="silent", messages=[message])
        await asyncio.sleep(3600)


async def test_a_quiet_connection_is_detected_by_the_watchdog_and_reconnected() -> None:
    server = grpc.aio.server()
    feed = SilentFeed()
    market_data_pb2_grpc.add_MarketDataServicer_to_server(feed, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        subscriber = FeedSubscriber(
            f"127.0.0.1:{port}", ["AAPL"], depth=10, heartbeat_timeout=0.3, backoff_initial=0.02, backoff_max=0.05
        )
        async with running(subscriber):
            await subscriber.wait_live(timeout=3)
            took = await eventually(lambda: subscriber.books["AAPL"].stale, 2)
            assert 0.2 < took < 1.0  # heartbeat_timeout is 0.3 s
            await eventually(lambda: feed.streams >= 2 and not subscriber.books["AAPL"].stale, 3)
            assert subscriber.stats.watchdog_timeouts >= 1
    finally:
        await server.stop(0)


async def test_without_reconnect_a_lost_connection_raises_feed_unavailable() -> None:
    async with running_feed_server(rate=50.0) as server:
        subscriber = FeedSubscriber(server.address, ["MSFT"], depth=5, reconnect=False)
        task = asyncio.create_task(subscriber.run())
        try:
            await subscriber.wait_live(timeout=5)
            await server.stop(grace=0.1)
            with pytest.raises(FeedUnavailable):
                async with asyncio.timeout(3):
                    await task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, FeedUnavailable):
                await task
    assert subscriber.state is ConnectionState.STOPPED and subscriber.books["MSFT"].stale


async def test_without_reconnect_request_errors_are_raised_translated() -> None:
    async with running_feed_server(rate=20.0) as server:
        unknown = FeedSubscriber(server.address, ["AAPL", "NOPE"], reconnect=False)
        with pytest.raises(UnknownInstrument, match="NOPE") as not_found:
            async with asyncio.timeout(5):
                await unknown.run()
        assert not_found.value.code is Code.UNKNOWN_INSTRUMENT
        assert unknown.state is ConnectionState.STOPPED
        duplicate = FeedSubscriber(server.address, ["AAPL", "AAPL"], reconnect=False)
        with pytest.raises(BadRequest) as refused:
            async with asyncio.timeout(5):
                await duplicate.run()
        assert refused.value.code is Code.BAD_REQUEST  # the code travels on the error
        with pytest.raises(UnknownInstrument):  # wait_live reports why the subscriber stopped
            await unknown.wait_live(timeout=1)
    with pytest.raises(ValueError):
        FeedSubscriber("127.0.0.1:1", depth=0)


async def test_nobody_listening() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(FeedUnavailable, match="connection refused") as refused:
        await list_instruments(address, timeout=3)
    assert refused.value.code is Code.UNAVAILABLE
    subscriber = FeedSubscriber(address, reconnect=False)
    with pytest.raises(FeedUnavailable, match=f"no feed server at {address}"):
        async with asyncio.timeout(5):
            await subscriber.run()
    # With reconnect it keeps trying (and stays stopped only when cancelled).
    retrying = FeedSubscriber(address, backoff_initial=0.01, backoff_max=0.05)
    async with running(retrying) as task:
        await eventually(lambda: retrying.stats.reconnects >= 3, 3)
        assert not task.done() and retrying.state is ConnectionState.CONNECTING
    assert state_of(retrying) is ConnectionState.STOPPED


async def test_a_failing_listener_does_not_stop_the_subscriber(caplog: pytest.LogCaptureFixture) -> None:
    async with running_feed_server(rate=100.0) as server:
        subscriber = FeedSubscriber(server.address, ["ETH-USD"], depth=5)
        calls = 0

        def broken(instrument_id: str, trades: Sequence[Trade]) -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("listener bug")

        subscriber.add_listener(broken)
        recorder = Recorder(subscriber)
        with caplog.at_level(logging.CRITICAL, logger="feed_server.client.subscriber"):
            async with running(subscriber):
                await subscriber.wait_live(timeout=5)
                await asyncio.sleep(0.3)
                subscriber.remove_listener(broken)
                removed_at = calls
                await asyncio.sleep(0.2)
        assert calls == removed_at > 5
        assert len(recorder.records) > calls


async def test_a_killed_feed_process_restarted_on_the_same_port_recovers() -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    processes = [start_feed_process(port, "--seed", "1", "--rate", "100")]
    try:
        await asyncio.to_thread(wait_for_health, address, 15)
        subscriber = FeedSubscriber(address, ["AAPL", "ES-Z6"], depth=10, backoff_initial=0.05, backoff_max=0.5)
        recorder = Recorder(subscriber)
        async with running(subscriber):
            await subscriber.wait_live(timeout=5)
            first_session = subscriber.session_id
            processes[0].kill()  # SIGKILL: no goodbye on the stream
            took = await eventually(
                lambda: (
                    subscriber.state is ConnectionState.RECONNECTING
                    and all(entry.stale for entry in subscriber.books.values())
                ),
                2,
            )
            assert took < 2
            processes.append(start_feed_process(port, "--seed", "1", "--rate", "100"))
            await subscriber.wait_live(timeout=20)
            assert subscriber.session_id != first_session
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=10)
    # The restarted feed (same seed) starts again from sequence 1: its books are checked against its own truth.
    second = [r for r in recorder.live_records() if r.session_id == subscriber.session_id]
    assert second and assert_records_true(second, 1, 100.0, 10)


def test_backoff_grows_with_jitter_up_to_the_cap_and_resets() -> None:
    from feed_server.pacing import Backoff

    delays_by_seed = []
    for seed in range(5):
        backoff = Backoff(0.1, 2.0, random.Random(seed))
        delays = [backoff.delay() for _ in range(10)]
        assert 0.03 <= delays[0] <= 0.2  # a random start around the initial delay
        assert all(d <= 2.0 for d in delays) and delays[-1] >= 1.5  # capped, and reaching the cap
        assert delays[4] > delays[0] * 4  # exponential growth
        backoff.reset()
        assert backoff.delay() <= 0.2  # back to the start after a success
        delays_by_seed.append(delays[0])
    assert len(set(delays_by_seed)) == 5  # jitter: clients do not retry in lockstep


class BurstFeed(SilentFeed):
    """One stream item carrying a snapshot and 2,999 heartbeats (a backlog arriving at once), then silence."""

    async def Subscribe(self, request: pb.SubscribeRequest, context: object) -> AsyncIterator[pb.SubscribeResponse]:
        bids, asks = [(100, 1)], [(101, 1)]
        checksum = compute_checksum(bids, asks)
        messages = [snapshot_message("AAPL", 1, 0, checksum, bids, asks)]
        messages += [heartbeat_message("AAPL", seq, seq, checksum) for seq in range(2, 3001)]
        yield pb.SubscribeResponse(session_id="burst", messages=messages)
        await asyncio.sleep(3600)


async def test_a_large_stream_item_is_applied_without_starving_the_event_loop() -> None:
    server = grpc.aio.server()
    market_data_pb2_grpc.add_MarketDataServicer_to_server(BurstFeed(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ticks = 0
    seen: list[tuple[int | None, bool, int]] = []

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(100_000):  # bounded
            ticks += 1
            await asyncio.sleep(0)

    try:
        subscriber = FeedSubscriber(f"127.0.0.1:{port}", ["AAPL"], depth=10, heartbeat_timeout=5)
        subscriber.add_listener(
            lambda iid, trades: seen.append((subscriber.books[iid].book.sequence, subscriber.books[iid].stale, ticks))
        )
        tick_task = asyncio.create_task(ticker())
        async with running(subscriber):
            await subscriber.wait_live(timeout=5)
            await eventually(lambda: subscriber.books["AAPL"].book.sequence == 3000, 5)
        tick_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tick_task
    finally:
        await server.stop(0)
    during = [t for seq, stale, t in seen if seq is not None and seq > 1 and not stale]
    assert len(during) == 2999
    assert during[-1] - during[0] >= 5  # other tasks ran while the batch was applied
