"""A bare grpc.aio MarketData server that streams pre-built messages as fast as the client takes them.

The baseline of row 2: ``python -m bench.bare_stream --port P --changes C --messages M`` serves
``Subscribe`` with SubscribeResponse items of M update messages of C level changes each, built once and
sent again and again; no simulation, no book, no buffering of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import AsyncIterator

import grpc

from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.pb import market_data_pb2_grpc

__all__ = ["BareMarketData", "build_responses", "main"]

log = logging.getLogger(__name__)

POOL = 64  # distinct pre-built responses, cycled


def _count(mean: float, rng: random.Random) -> int:
    """floor(mean) or ceil(mean), at random, so that counts average ``mean`` (at least 1)."""
    low = int(mean)
    return max(1, low + (1 if rng.random() < mean - low else 0))


def build_responses(changes: float, messages: float, seed: int = 1) -> list[pb.SubscribeResponse]:
    """``POOL`` responses of on average ``messages`` update messages of on average ``changes`` level changes."""
    rng = random.Random(seed)
    ids = [spec.instrument_id for spec in DEFAULT_INSTRUMENTS]
    now = time.time_ns()
    out: list[pb.SubscribeResponse] = []
    sequence = 1_000
    for _ in range(POOL):
        batch = []
        for _ in range(_count(messages, rng)):
            sequence += 1
            update = pb.Update(
                changes=[
                    pb.LevelChange(
                        side=pb.SIDE_BID if rng.random() < 0.5 else pb.SIDE_ASK,
                        price_ticks=rng.randint(1_000_000, 1_001_000),
                        size_lots=rng.choice((0, rng.randint(1, 5_000))),
                    )
                    for _ in range(_count(changes, rng))
                ]
            )
            batch.append(
                pb.BookMessage(
                    instrument_id=rng.choice(ids),
                    sequence=sequence,
                    event_time_ns=now,
                    checksum=rng.getrandbits(32),
                    update=update,
                )
            )
        out.append(pb.SubscribeResponse(session_id="bare-0123456789abcdef", messages=batch))
    return out


class BareMarketData(market_data_pb2_grpc.MarketDataServicer):  # type: ignore[misc]
    def __init__(self, responses: list[pb.SubscribeResponse]) -> None:
        self._responses = responses

    async def Subscribe(
        self, request: pb.SubscribeRequest, context: grpc.aio.ServicerContext[pb.SubscribeRequest, pb.SubscribeResponse]
    ) -> AsyncIterator[pb.SubscribeResponse]:
        responses = self._responses
        while True:
            for response in responses:
                yield response


async def serve(port: int, changes: float, messages: float) -> None:
    server = grpc.aio.server()
    market_data_pb2_grpc.add_MarketDataServicer_to_server(BareMarketData(build_responses(changes, messages)), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    log.info("bare stream serving on 127.0.0.1:%d (%.2f changes x %.2f messages per item)", bound, changes, messages)
    print(f"READY {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--changes", type=float, default=10, help="mean level changes per message")
    parser.add_argument("--messages", type=float, default=1, help="mean messages per stream item")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.changes, args.messages))


if __name__ == "__main__":
    main()
