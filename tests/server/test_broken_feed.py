"""A broken feed says so: when the engine task dies, health goes NOT_SERVING, streams and new calls end with
UNAVAILABLE naming the failure, and ``python -m feed_server`` exits 2 after logging the failure once.

The engine is made to crash with the test hook (``crash_after_events`` in process, the environment variable
``FEED_TEST_CRASH_AFTER_EVENTS`` for the command).
"""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from feed_server.protocol.book import OrderBook
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.pb import market_data_pb2_grpc
from feed_server.protocol.wire import apply_message
from feed_server.server.feed import SERVICE_NAME
from tests.servers import free_port, running_feed_server, start_feed_process

AAPL = DEFAULT_INSTRUMENTS[0]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
FAILURE = "the feed's engine failed: RuntimeError: crashed on purpose after"


async def test_a_failed_engine_ends_streams_with_unavailable_and_health_goes_not_serving(caplog):
    caplog.set_level(logging.INFO)
    # A long idle step: the engine runs no event before the subscription, so the crash comes after it.
    async with (
        running_feed_server(rate=200, instruments=[AAPL], idle_step_s=60.0, crash_after_events=300) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = market_data_pb2_grpc.MarketDataStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        call = None
        book = OrderBook("AAPL", 10)
        try:
            async with asyncio.timeout(30):
                assert (await watch.read()).status == SERVING
                call = stub.Subscribe(pb.SubscribeRequest(instrument_ids=["AAPL"], depth=10))
                # The stream is consistent up to the failure, then ends with UNAVAILABLE naming it.
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    while True:
                        item = await call.read()
                        assert item is not grpc.aio.EOF, "the stream ended normally: the failure was not told"
                        for message in item.messages:
                            apply_message(book, message)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
                details = info.value.details() or ""
                assert details.startswith(FAILURE), details
                assert book.sequence is not None and book.sequence > 0
                assert (await watch.read()).status == NOT_SERVING
        finally:
            if call is not None:
                call.cancel()
            watch.cancel()
        assert server.failure == details
        for name in ("", SERVICE_NAME):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert answer.status == NOT_SERVING, name
        # New calls are refused with the same status and message, nothing streamed first.
        late = stub.Subscribe(pb.SubscribeRequest(instrument_ids=["AAPL"]))
        async with asyncio.timeout(5):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await late.read()
        assert (info.value.code(), info.value.details()) == (grpc.StatusCode.UNAVAILABLE, details)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetSnapshot(pb.SnapshotRequest(instrument_id="AAPL"), timeout=5)
        assert (info.value.code(), info.value.details()) == (grpc.StatusCode.UNAVAILABLE, details)
        async with asyncio.timeout(5):
            assert await server.wait_failure() == details
    # Logged once, at ERROR, with the traceback.
    # (grpc.aio's poller may log "Event loop is closed" for an earlier test's closed loop: not this feed's error.)
    errors = [
        record
        for record in caplog.records
        if record.levelno >= logging.ERROR and "Event loop is closed" not in str(record.exc_info and record.exc_info[1])
    ]
    assert len(errors) == 1, [record.getMessage() for record in errors]
    assert errors[0].exc_info is not None and "crashed on purpose" in str(errors[0].exc_info[1])


def test_the_feed_process_exits_2_after_logging_the_failure_once(monkeypatch):
    monkeypatch.setenv("FEED_TEST_CRASH_AFTER_EVENTS", "500")  # 7 instruments at 50/s: about 1.5 s
    process = start_feed_process(free_port(), "--rate", "50")
    try:
        _, stderr_bytes = process.communicate(timeout=60)
        stderr = stderr_bytes.decode(errors="replace")
        assert process.returncode == 2, stderr
        assert stderr.count("Traceback (most recent call last)") == 1, stderr
        assert stderr.count(" ERROR ") == 1, stderr
        assert "the engine failed" in stderr and "RuntimeError: crashed on purpose after" in stderr, stderr
        assert "stopped" in stderr, stderr
    finally:
        process.kill()
        process.wait(timeout=5)


@pytest.mark.parametrize("value", ["0", "-3", "soon"])
def test_a_bad_crash_hook_value_is_one_error_line_and_exit_1(monkeypatch, value):
    monkeypatch.setenv("FEED_TEST_CRASH_AFTER_EVENTS", value)
    process = start_feed_process(free_port())
    try:
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 1
        lines = stderr.decode().splitlines()
        assert len(lines) == 1 and "FEED_TEST_CRASH_AFTER_EVENTS" in lines[0], lines
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)
