"""Measure what one subscriber receives from a running feed server.

    python -m feed_server --port 50051 --rate 5000 &
    python -m scripts.feed_rate --address 127.0.0.1:50051 --seconds 10 [--depth 20] [--instruments AAPL,...]

Prints messages/s, level changes/s, stream items/s, the event-time-to-receipt lag and the gap between stream
items (p50/p99/max), after decoding and applying every message to an OrderBook (sequence and checksum verified).

    python -m scripts.feed_rate --in-process [--depth 100] [--seconds 3] [--subscribers 1]

measures the engine alone, on one core, without the network: events/s that ``Engine.advance`` simulates and
publishes (CPU time of this process) with that many subscribers of every instrument at that depth, each
taking its messages after every step.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import grpc

from feed_server.protocol.core import BookModel, OrderBook
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.pb import market_data_pb2_grpc
from feed_server.protocol.wire import apply_message
from feed_server.server.engine import Engine


async def measure(address: str, seconds: float, depth: int, instruments: list[str]) -> None:
    async with grpc.aio.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)]) as ch:
        call = market_data_pb2_grpc.MarketDataStub(ch).Subscribe(
            pb.SubscribeRequest(instrument_ids=instruments, depth=depth)
        )
        books: dict[str, BookModel] = {}
        messages = changes = items = 0
        lags: list[float] = []
        gaps: list[float] = []
        last_arrival = start = time.monotonic()
        warmup_done = False
        try:
            while True:
                item = await call.read()
                if item is grpc.aio.EOF:
                    break
                now_ns = time.time_ns()
                arrival = time.monotonic()
                gap, last_arrival = arrival - last_arrival, arrival
                for message in item.messages:
                    book = books.get(message.instrument_id)
                    if book is None:
                        book = books[message.instrument_id] = OrderBook(message.instrument_id, depth)
                    apply_message(book, message)
                if not warmup_done:
                    if time.monotonic() - start > 1.0:
                        warmup_done, start = True, time.monotonic()
                    continue
                items += 1
                gaps.append(gap * 1e3)
                messages += len(item.messages)
                changes += sum(len(m.update.changes) for m in item.messages)
                lags.append((now_ns - item.messages[-1].event_time_ns) / 1e6)
                if time.monotonic() - start >= seconds:
                    break
        finally:
            call.cancel()
        elapsed = time.monotonic() - start
        lags.sort()
        gaps.sort()
        print(f"instruments {len(books)} depth {depth} over {elapsed:.1f} s")
        print(f"messages/s       {messages / elapsed:12,.0f}")
        print(f"level changes/s  {changes / elapsed:12,.0f}")
        print(f"stream items/s   {items / elapsed:12,.0f}  ({messages / max(items, 1):.0f} messages per item)")
        if lags:
            print(
                f"lag ms           p50 {lags[len(lags) // 2]:.1f}  p99 {lags[int(len(lags) * 0.99)]:.1f}  "
                f"max {lags[-1]:.1f}"
            )
            p50, p99 = gaps[len(gaps) // 2], gaps[int(len(gaps) * 0.99)]
            print(f"item gap ms      p50 {p50:.1f}  p99 {p99:.1f}  max {gaps[-1]:.1f}")


def measure_engine(seconds: float, depth: int, subscribers: int) -> None:
    """Events/s through Engine.advance (simulate and publish), by this process's CPU time."""
    engine = Engine(DEFAULT_INSTRUMENTS, seed=1, rate=2000.0)
    subs = [engine.fanout.subscribe(None, depth) for _ in range(subscribers)]
    elapsed = 0
    start_events = 0
    start = 0.0
    for step in range(10_000_000):
        if step == 50:  # warmed up
            start_events, start = engine.events, time.process_time()
        elapsed += 10_000_000  # 10 ms of simulated time: about 140 events
        engine.advance(elapsed)
        for sub in subs:
            sub.take_nowait()
        if step > 50 and time.process_time() - start >= seconds:
            break
    cpu = time.process_time() - start
    rate = (engine.events - start_events) / cpu
    print(f"engine: {rate:,.0f} events/s on one core ({subscribers} subscriber(s), depth {depth})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--instruments", default="", help="comma-separated ids (default: all)")
    parser.add_argument("--in-process", action="store_true", help="measure the engine alone (no server, no network)")
    parser.add_argument("--subscribers", type=int, default=1, help="with --in-process: subscribers of every instrument")
    args = parser.parse_args()
    if args.in_process:
        measure_engine(args.seconds, args.depth, args.subscribers)
        return 0
    ids = [part for part in args.instruments.split(",") if part]
    asyncio.run(measure(args.address, args.seconds, args.depth, ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
