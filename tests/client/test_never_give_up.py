"""The subscriber never gives up while it runs: every kind of failure marks the books stale, says why, and is
retried, against real gRPC servers on 127.0.0.1 that fail in every way a feed (or what stands in front of it)
can; the real feed then comes back on the same port and the books go live again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest

from feed_server.client.grpc_transport import FeedSubscriber
from feed_server.client.keeper import ConnectionState
from feed_server.client.sync import InstrumentSync
from feed_server.protocol.checksum import compute_checksum
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.pb import market_data_pb2_grpc
from feed_server.protocol.wire import heartbeat_message, instrument_to_pb, snapshot_message
from feed_server.server.feed import Feed, FeedOptions
from tests.client.support import running
from tests.servers import free_port
from tests.waiting import eventually

SPECS = {spec.instrument_id: spec for spec in DEFAULT_INSTRUMENTS}
LOGGER = "feed_server.client.subscriber"
BIDS, ASKS = [(100, 1)], [(101, 1)]


def first_snapshot(instrument_id: str = "AAPL", sequence: int = 1) -> pb.BookMessage:
    return snapshot_message(instrument_id, sequence, 0, compute_checksum(BIDS, ASKS), BIDS, ASKS)


class BrokenFeed(market_data_pb2_grpc.MarketDataServicer):  # type: ignore[misc]
    """A real MarketData server whose Subscribe fails as ``mode`` says; ListInstruments answers AAPL."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.streams = 0

    async def ListInstruments(self, request: pb.ListInstrumentsRequest, context: Any) -> pb.ListInstrumentsResponse:
        return pb.ListInstrumentsResponse(instruments=[instrument_to_pb(SPECS["AAPL"])])

    async def Subscribe(self, request: pb.SubscribeRequest, context: Any) -> AsyncIterator[pb.SubscribeResponse]:
        self.streams += 1
        if self.mode == "raise":  # a server-side exception: the call ends with UNKNOWN
            raise RuntimeError("servicer bug")
        if self.mode == "live-then-internal":
            yield pb.SubscribeResponse(session_id="broken", messages=[first_snapshot()])
            await asyncio.sleep(0.05)  # the fake server's script: live for a moment, then the stream breaks
            await context.abort(grpc.StatusCode.INTERNAL, "RST_STREAM with error code 2")
        await context.abort(grpc.StatusCode[self.mode], f"refused with {self.mode}")


async def start_server(port: int, servicer: object | None) -> grpc.aio.Server:
    """A real grpc.aio server on 127.0.0.1:``port``; without a servicer it implements nothing (UNIMPLEMENTED)."""
    server = grpc.aio.server()
    if servicer is not None:
        market_data_pb2_grpc.add_MarketDataServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    assert server.add_insecure_port(f"127.0.0.1:{port}") == port
    await server.start()
    return server


def subscriber_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= level]


@pytest.mark.parametrize(
    ("mode", "code", "permanent"),
    [
        ("INTERNAL", "INTERNAL", False),  # a corrupt frame, a proxy's RST_STREAM
        ("raise", "UNKNOWN", False),
        ("RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED", False),
        ("live-then-internal", "INTERNAL", False),  # live for a moment, then the stream fails
        ("NOT_FOUND", "unknown_instrument", True),  # an instrument a restarted feed dropped
        ("FAILED_PRECONDITION", "FAILED_PRECONDITION", True),
        (None, "UNIMPLEMENTED", True),  # the wrong server: no MarketData service at all
    ],
)
async def test_every_status_is_retried_until_the_real_feed_is_back(
    mode: str | None, code: str, permanent: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    port = free_port()
    broken = BrokenFeed(mode) if mode is not None else None
    server = await start_server(port, broken)
    feed: Feed | None = None
    subscriber = FeedSubscriber(f"127.0.0.1:{port}", ["AAPL"], depth=10, backoff_initial=0.01, backoff_max=0.1, seed=1)
    try:
        async with running(subscriber) as task:
            # (In the live-then-INTERNAL mode each stream is live for a moment: look between two of them.)
            await eventually(lambda: subscriber.stats.reconnects >= 4 and subscriber.problem is not None, 5)
            assert not task.done(), "the subscriber gave up"
            problem = subscriber.problem
            assert problem is not None and code in problem, problem
            assert ("retrying every 0.1 s" in problem) is permanent, problem
            if broken is not None:
                entry = subscriber.books["AAPL"]
                assert entry.stale and entry.stale_reason
                assert code in entry.stale_reason, entry.stale_reason
                assert broken.streams >= 4
            # One line at WARNING per distinct problem, not one per retry (the retries are at INFO).
            loud = subscriber_records(caplog, logging.WARNING)
            assert len(loud) == 1, [r.getMessage() for r in loud]
            assert code in loud[0].getMessage()
            assert len(subscriber_records(caplog, logging.INFO)) >= 4

            await server.stop(0)
            feed = Feed(FeedOptions(host="127.0.0.1", port=port, seed=1, rate=100.0))
            await feed.start()
            # Wait for the real feed's session, not just "live": in the live-then-INTERNAL mode the subscriber
            # can still be live on the stopped server's last stream for a moment, before it sees that end.
            real = feed.session_id
            await eventually(lambda: subscriber.session_id == real and subscriber.state is ConnectionState.LIVE, 10)
            assert subscriber.problem is None
            assert subscriber.books["AAPL"].stale_reason is None
    finally:
        await server.stop(0)
        if feed is not None:
            await feed.stop(grace=0.1)


async def test_a_permanent_problem_is_retried_at_the_backoff_cap(caplog: pytest.LogCaptureFixture) -> None:
    """NOT_FOUND for an instrument the feed does not have: retried every ``backoff_max`` seconds, not faster."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    port = free_port()
    feed = Feed(FeedOptions(host="127.0.0.1", port=port, seed=1, rate=50.0))
    await feed.start()
    subscriber = FeedSubscriber(f"127.0.0.1:{port}", ["AAPL", "XYZ"], backoff_initial=0.01, backoff_max=0.3)
    try:
        async with running(subscriber) as task:
            await asyncio.sleep(1.0)  # the window the retries are counted in (the point of the test)
            assert not task.done()
            # Every 0.3 s from the first attempt: 3 retries in 1 s (an exponential 0.01 s start would make 6+).
            assert 2 <= subscriber.stats.reconnects <= 4, subscriber.stats.reconnects
            assert subscriber.problem == (
                f"feed at 127.0.0.1:{port}: unknown instrument id 'XYZ' (unknown_instrument); retrying every 0.3 s"
            )
            assert subscriber.books["AAPL"].stale_reason == subscriber.problem
            assert len(subscriber_records(caplog, logging.WARNING)) == 1
    finally:
        await feed.stop(grace=0.1)


class CorruptFeed(BrokenFeed):
    """Streams bytes that are no SubscribeResponse (bit flips on the way), after ``good`` good responses."""

    def __init__(self, good: int) -> None:
        super().__init__("corrupt")
        self.good = good


def corrupt_feed_handler(feed: CorruptFeed) -> grpc.GenericRpcHandler:
    """The MarketData service with a Subscribe that sends raw bytes (a serializer of its own)."""

    async def list_instruments(request: pb.ListInstrumentsRequest, context: Any) -> pb.ListInstrumentsResponse:
        return await feed.ListInstruments(request, context)

    async def subscribe(request: pb.SubscribeRequest, context: Any) -> AsyncIterator[bytes]:
        feed.streams += 1
        checksum = compute_checksum(BIDS, ASKS)
        messages = [first_snapshot()]
        yield pb.SubscribeResponse(session_id="corrupt", messages=messages).SerializeToString()
        for seq in range(2, 2 + feed.good):
            yield pb.SubscribeResponse(
                session_id="corrupt", messages=[heartbeat_message("AAPL", seq, seq, checksum)]
            ).SerializeToString()
        yield b"\x0a\xff\xff\xff\xff\x0f"  # field 1 with a length past the end: not a valid message
        await asyncio.sleep(3600)  # the fake stream stays open after its bad bytes (the client must end it)

    return grpc.method_handlers_generic_handler(
        "marketdata.v1.MarketData",
        {
            "ListInstruments": grpc.unary_unary_rpc_method_handler(
                list_instruments,
                request_deserializer=pb.ListInstrumentsRequest.FromString,
                response_serializer=pb.ListInstrumentsResponse.SerializeToString,
            ),
            "Subscribe": grpc.unary_stream_rpc_method_handler(
                subscribe, request_deserializer=pb.SubscribeRequest.FromString, response_serializer=None
            ),
        },
    )


async def test_a_message_that_does_not_decode_is_a_lost_connection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()
    corrupt = CorruptFeed(good=3)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([corrupt_feed_handler(corrupt)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    feed: Feed | None = None
    subscriber = FeedSubscriber(f"127.0.0.1:{port}", ["AAPL"], depth=10, backoff_initial=0.01, backoff_max=0.05)
    seen_live = []
    subscriber.add_listener(lambda iid, trades: seen_live.append(not subscriber.books[iid].stale))
    try:
        async with running(subscriber) as task:
            await eventually(lambda: corrupt.streams >= 3 and subscriber.stats.reconnects >= 2, 5)
            assert not task.done()
            assert any(seen_live), "each stream was live until its corrupt message"
            entry = subscriber.books["AAPL"]
            await eventually(lambda: entry.stale, 2)
            assert entry.stale_reason is not None and "corrupt message" in entry.stale_reason
            await server.stop(0)
            feed = Feed(FeedOptions(host="127.0.0.1", port=port, seed=1, rate=100.0))
            await feed.start()
            await subscriber.wait_live(timeout=10)
    finally:
        await server.stop(0)
        if feed is not None:
            await feed.stop(grace=0.1)
    # Decoded by the subscriber, not by grpc: no "Exception deserializing message!" at ERROR, one warning.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    corrupt_lines = [r for r in subscriber_records(caplog, logging.INFO) if "corrupt message" in r.getMessage()]
    assert len(corrupt_lines) >= 2
    assert [r.levelno for r in corrupt_lines].count(logging.WARNING) == 1


async def test_an_unexpected_exception_is_logged_once_and_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug inside the stream handling (here: planted in the sync) ends the connection, not the subscriber."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    bug = True
    original = InstrumentSync.on_live_message

    def buggy(self: InstrumentSync, message: pb.BookMessage) -> Any:
        if bug and message.WhichOneof("body") != "snapshot" and self.entry.stale is False:
            raise AttributeError("'NoneType' object has no attribute 'session_id'")
        return original(self, message)

    monkeypatch.setattr(InstrumentSync, "on_live_message", buggy)
    port = free_port()
    feed = Feed(FeedOptions(host="127.0.0.1", port=port, seed=1, rate=100.0))
    await feed.start()
    subscriber = FeedSubscriber(f"127.0.0.1:{port}", ["AAPL"], depth=10, backoff_initial=0.01, backoff_max=0.05)
    try:
        async with running(subscriber) as task:
            await eventually(lambda: subscriber.stats.unexpected_errors >= 3, 5)
            assert not task.done()
            assert subscriber.stats.reconnects >= 2
            assert subscriber.problem is not None and "AttributeError" in subscriber.problem
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1, [r.getMessage() for r in errors]
            assert errors[0].exc_info is not None, "logged with its traceback"
            assert "AttributeError" in errors[0].getMessage()
            bug = False  # fixed: the next connection stays live
            await subscriber.wait_live(timeout=5)
            await asyncio.sleep(0.3)  # nothing must happen during it: the fixed connection stays live
            assert not subscriber.books["AAPL"].stale and subscriber.problem is None
    finally:
        await feed.stop(grace=0.1)


class TwoSessionFeed(BrokenFeed):
    """A stream of session "new" that skips a sequence (so the subscriber asks for a snapshot), and GetSnapshot
    answers that first come from another session ("old": a snapshot the subscriber must never apply)."""

    def __init__(self, foreign_answers: int) -> None:
        super().__init__("two-sessions")
        self.foreign_answers = foreign_answers
        self.snapshot_calls = 0

    async def Subscribe(self, request: pb.SubscribeRequest, context: Any) -> AsyncIterator[pb.SubscribeResponse]:
        checksum = compute_checksum(BIDS, ASKS)
        yield pb.SubscribeResponse(session_id="new", messages=[first_snapshot()])
        yield pb.SubscribeResponse(session_id="new", messages=[heartbeat_message("AAPL", 3, 3, checksum)])  # gap
        for seq in range(4, 400):
            await asyncio.sleep(0.02)  # the fake feed's pace
            yield pb.SubscribeResponse(session_id="new", messages=[heartbeat_message("AAPL", seq, seq, checksum)])

    async def GetSnapshot(self, request: pb.SnapshotRequest, context: Any) -> pb.BookMessage:
        self.snapshot_calls += 1
        if self.snapshot_calls <= self.foreign_answers:
            other = [(500, 9)], [(501, 9)]
            message = snapshot_message("AAPL", 10_000, 0, compute_checksum(*other), *other)
            message.session_id = "old"
            return message
        message = first_snapshot(sequence=3)
        message.session_id = "new"
        return message


async def test_a_snapshot_of_another_session_is_never_applied() -> None:
    port = free_port()
    feed = TwoSessionFeed(foreign_answers=3)
    server = await start_server(port, feed)
    subscriber = FeedSubscriber(
        f"127.0.0.1:{port}", ["AAPL"], depth=10, resync_backoff_initial=0.01, resync_backoff_max=0.02
    )
    seen: list[tuple[bool, int | None, list[tuple[int, int]]]] = []
    subscriber.add_listener(
        lambda iid, trades: seen.append(
            (subscriber.books[iid].stale, subscriber.books[iid].book.sequence, subscriber.books[iid].book.bids())
        )
    )
    try:
        async with running(subscriber):
            await eventually(lambda: subscriber.stats.resyncs >= 1, 5)
            await subscriber.wait_live(timeout=2)
    finally:
        await server.stop(0)
    assert subscriber.stats.foreign_snapshots == 3 and feed.snapshot_calls == 4
    assert all(bids == BIDS for _, _, bids in seen), "a level of the other session's snapshot was applied"
    assert all(sequence is not None and sequence < 10_000 for _, sequence, _ in seen)
    first_stale = next(i for i, (stale, _, _) in enumerate(seen) if stale)
    assert any(not stale for stale, _, _ in seen[first_stale:]), "live again after the resync"
