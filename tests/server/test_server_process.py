"""``python -m feed_server`` as a real process: health, clean shutdown on signals, option errors, faults."""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest

from feed_server.protocol.book import OrderBook
from feed_server.protocol.errors import ChecksumMismatch, CrossedBook, DigestMismatch, SequenceGap
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.pb import market_data_pb2_grpc
from feed_server.protocol.wire import apply_message
from tests.servers import REPO_ROOT, child_env, free_port, running_feed_server, start_feed_process, wait_for_health


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_server_cleanly_while_streaming(sig):
    port = free_port()
    process = start_feed_process(port, "--rate", "200", "--seed", "3")
    try:
        wait_for_health(f"127.0.0.1:{port}", timeout=10)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = market_data_pb2_grpc.MarketDataStub(channel)
            stream = stub.Subscribe(pb.SubscribeRequest(depth=5), timeout=15)
            books: dict[str, OrderBook] = {}
            first = next(stream)
            for message in first.messages:
                apply_message(books.setdefault(message.instrument_id, OrderBook(message.instrument_id, 5)), message)
            assert len(books) == 7  # the initial snapshots
            process.send_signal(sig)
            for item in stream:  # consistent up to its end: nothing lost or half-sent while stopping
                for message in item.messages:
                    apply_message(books[message.instrument_id], message)
            # The stream ended normally (an error status would have raised), before its 15 s deadline.
            assert stream.code() == grpc.StatusCode.OK
        _, stderr = process.communicate(timeout=5)
        assert process.returncode == 0, stderr.decode()
        assert b"Traceback" not in stderr
        assert b"stopped" in stderr
    finally:
        process.kill()
        process.wait(timeout=5)


def test_a_rate_the_machine_cannot_keep_up_with_still_streams_regularly_and_stops_promptly():
    port = free_port()
    process = start_feed_process(port, "--rate", "500000", "--seed", "2")  # far beyond any machine
    try:
        wait_for_health(f"127.0.0.1:{port}", timeout=10)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stream = market_data_pb2_grpc.MarketDataStub(channel).Subscribe(pb.SubscribeRequest(depth=5), timeout=15)
            next(stream)  # the initial snapshots
            arrivals = [time.monotonic()]
            lags_ms: list[float] = []
            for item in stream:
                arrivals.append(time.monotonic())
                lags_ms.append((time.time_ns() - item.messages[-1].event_time_ns) / 1e6)
                if arrivals[-1] - arrivals[0] > 2.0:
                    break
            gaps = [b - a for a, b in itertools.pairwise(arrivals)]
            assert len(gaps) > 20, "stream items arrive regularly, many per second"
            assert max(gaps) < 0.2, f"longest silence {max(gaps) * 1e3:.0f} ms"
            # The feed runs slower than real time, but the lag it shows in event_time_ns stays bounded.
            assert max(lags_ms[len(lags_ms) // 2 :]) < 2_000, f"lag {max(lags_ms):.0f} ms"
            process.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            _, stderr = process.communicate(timeout=5)
            stopped_in = time.monotonic() - stopping
        assert process.returncode == 0, stderr.decode()
        assert stopped_in < 2.0, f"SIGTERM took {stopped_in:.1f} s"
        assert b"Traceback" not in stderr
        assert b"cannot keep up" in stderr
    finally:
        process.kill()
        process.wait(timeout=5)


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--rate", "-5"], "--rate"),
        (["--rate", "lots"], "--rate"),
        (["--port", "70000"], "--port"),
        (["--instruments", "AAPL,NOPE"], "NOPE"),
        (["--fault-rate", "2"], "--fault-rate"),
        (["--fault-kinds", "drop,explode"], "explode"),
    ],
)
def test_bad_options_are_one_error_line_and_exit_code_1(args, text):
    result = subprocess.run(
        [sys.executable, "-m", "feed_server", *args],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        timeout=20,
    )
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and text in lines[0], lines
    assert b"Traceback" not in result.stderr


def test_a_port_in_use_is_one_error_line_and_exit_code_1():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "feed_server", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"python -m feed_server: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ], result.stderr


async def test_injected_faults_are_detected_by_the_book():
    kinds: dict[type, int] = {}
    async with running_feed_server(rate=1000, fault_rate=0.05, seed=9) as server:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = market_data_pb2_grpc.MarketDataStub(channel)
            call = stub.Subscribe(pb.SubscribeRequest(instrument_ids=["AAPL", "ES-Z6"], depth=10))
            books = {iid: OrderBook(iid, 10) for iid in ("AAPL", "ES-Z6")}
            applied = 0
            try:
                async with asyncio.timeout(15):
                    while applied < 3000 or len(kinds) < 4:
                        item = await call.read()
                        for message in item.messages:
                            book = books[message.instrument_id]
                            if book.sequence is not None and message.sequence <= book.sequence:
                                kinds[type(None)] = kinds.get(type(None), 0) + 1  # a duplicate or late message
                                continue
                            try:
                                apply_message(book, message)
                                applied += 1
                            except (SequenceGap, ChecksumMismatch, DigestMismatch, CrossedBook) as exc:
                                # a corrupted size can undelete a best level and cross the book, caught before
                                # the checksum is compared: a detection like the others
                                kinds[type(exc)] = kinds.get(type(exc), 0) + 1
                                snapshot = await stub.GetSnapshot(
                                    pb.SnapshotRequest(instrument_id=message.instrument_id, depth=10), timeout=5
                                )
                                apply_message(book, snapshot)  # resynchronise and go on
            finally:
                call.cancel()
    assert kinds.get(SequenceGap, 0) > 0
    assert kinds.get(ChecksumMismatch, 0) > 0
    assert kinds.get(DigestMismatch, 0) > 0  # a deep level changed, the checksum intact: only the digest tells
    assert kinds.get(type(None), 0) > 0


async def test_without_faults_nothing_is_wrong():
    async with running_feed_server(rate=1000) as server, grpc.aio.insecure_channel(server.address) as channel:
        call = market_data_pb2_grpc.MarketDataStub(channel).Subscribe(pb.SubscribeRequest(depth=10))
        books: dict[str, OrderBook] = {}
        applied = 0
        try:
            async with asyncio.timeout(15):
                while applied < 5000:
                    item = await call.read()
                    for message in item.messages:
                        book = books.setdefault(message.instrument_id, OrderBook(message.instrument_id, 10))
                        apply_message(book, message)
                        applied += 1
        finally:
            call.cancel()
        assert len(books) == 7
