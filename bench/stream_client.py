"""A gRPC subscriber process for rows 2 and 12: receive, decode and (against the feed) apply, then print a JSON
line.

``python -m bench.stream_client --address A --seconds S [--bare] [--cpu-pid P] [--until-messages N]`` subscribes
to every instrument, waits for the first item, then counts for S seconds (with ``--until-messages``: until N
messages arrived, at most S seconds; the window then ends at the last one: a finite stream, such as a replay).
Against the feed it applies every message to an OrderBook with ``feed_server.protocol.wire.apply_message``
(sequence, crossing and checksum verified); with ``--bare`` it only receives and decodes (the baseline: nothing to
verify in pre-built messages). With ``--cpu-pid`` it also reads that process's CPU times (psutil) when the window
opens and when it closes, so the server's CPU is counted over the window alone: ``cpu_percent`` of one core,
``cpu_seconds`` over ``cpu_window_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import grpc
import psutil

from feed_server.protocol.core import BookModel, OrderBook
from feed_server.protocol.errors import BookError
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.pb import market_data_pb2_grpc
from feed_server.protocol.wire import apply_message

__all__ = ["consume", "main"]

OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


def _cpu_seconds(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return float(times.user + times.system)


async def consume(
    address: str, seconds: float, bare: bool, depth: int, cpu_pid: int | None = None, until_messages: int | None = None
) -> dict[str, Any]:
    changes = messages = items = snapshots = resyncs = errors = 0
    books: dict[str, BookModel] = {}
    watched = None if cpu_pid is None else psutil.Process(cpu_pid)
    async with grpc.aio.insecure_channel(address, options=OPTIONS) as channel:
        stub = market_data_pb2_grpc.MarketDataStub(channel)
        call = stub.Subscribe(pb.SubscribeRequest(depth=depth))
        stream = call.__aiter__()
        first: pb.SubscribeResponse = await asyncio.wait_for(stream.__anext__(), 10)
        pending = [first]
        cpu_before = _cpu_seconds(watched)
        start = time.perf_counter()
        deadline = start + seconds
        try:
            while True:
                for response in pending:
                    items += 1
                    for message in response.messages:
                        messages += 1
                        kind = message.WhichOneof("body")
                        if kind == "update":
                            changes += len(message.update.changes)
                        elif kind == "snapshot":
                            snapshots += 1
                            if message.snapshot.reason == pb.SNAPSHOT_REASON_RESYNC:
                                resyncs += 1
                        if bare:
                            continue
                        book = books.get(message.instrument_id)
                        if book is None:
                            book = books[message.instrument_id] = OrderBook(message.instrument_id, depth)
                        try:
                            apply_message(book, message)
                        except BookError:
                            errors += 1
                now = time.perf_counter()
                if now >= deadline or (until_messages is not None and messages >= until_messages):
                    break
                try:
                    pending = [await asyncio.wait_for(stream.__anext__(), deadline - now)]
                except TimeoutError:
                    break  # the window is over; nothing more arrived in it
            cpu_window = time.perf_counter() - start
            cpu_seconds = _cpu_seconds(watched) - cpu_before
        finally:
            call.cancel()
        elapsed = cpu_window if until_messages is not None else max(time.perf_counter() - start, seconds)
        stalled = items <= 1  # nothing after the first item in the whole window
    return {
        "seconds": elapsed,
        "changes": changes,
        "messages": messages,
        "items": items,
        "snapshots": snapshots,
        "resyncs": resyncs,
        "errors": errors,
        "stalled": stalled,
        "changes_per_s": changes / elapsed,
        "messages_per_s": messages / elapsed,
        "changes_per_message": changes / max(1, messages - snapshots),
        "messages_per_item": messages / max(1, items),
        "cpu_seconds": cpu_seconds,
        "cpu_window_s": cpu_window,
        "cpu_percent": 100 * cpu_seconds / cpu_window if watched is not None else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--bare", action="store_true")
    parser.add_argument("--cpu-pid", type=int, help="also count this process's CPU over the window")
    parser.add_argument("--until-messages", type=int, help="end the window once this many messages arrived")
    args = parser.parse_args()
    result = asyncio.run(
        consume(args.address, args.seconds, args.bare, args.depth, args.cpu_pid, args.until_messages)
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
