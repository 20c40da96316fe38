"""Rows 7e and 7f: the idle floor that rows 7a and 7b are judged against.

A bare ``grpc.aio`` server and a bare ``grpc.aio`` client exchanging the feed's own stream items at the times the
feed sent them, with nothing of the product around them. The items are recorded first from a real feed at the
default rate, subscribed as the dashboard subscribes (every instrument at full depth): each ``SubscribeResponse``'s
bytes and its time from the first. Then ``python -m bench.idle_floor serve --items FILE --port P`` sends those bytes
(already serialised: no message building) on the feed's ``Subscribe`` method, each at its recorded time, over and
over, and ``python -m bench.idle_floor read --address A`` reads them and parses each (``SubscribeResponse.FromString``,
what any client must do) and nothing else. Both processes' CPU over the same window as 7a and 7b.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import pickle
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio

from bench.procs import cpu_percent, free_port, started, wait_for_output
from feed_server.protocol.book import MAX_DEPTH
from feed_server.protocol.pb import market_data_pb2 as pb

__all__ = ["SUBSCRIBE", "floor_cpu", "record"]

log = logging.getLogger(__name__)

SUBSCRIBE = "/marketdata.v1.MarketData/Subscribe"
Items = list[tuple[float, bytes]]  # (seconds after the first item, the item's bytes)


def record(address: str, seconds: float) -> Items:
    """The stream items a full-depth subscriber to every instrument receives over ``seconds``, with their times."""
    items: Items = []
    request = pb.SubscribeRequest(depth=MAX_DEPTH).SerializeToString()
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_stream(SUBSCRIBE, request_serializer=None, response_deserializer=None)(
            request, timeout=seconds + 15
        )
        start = None
        for item in call:
            now = time.monotonic()
            start = now if start is None else start
            items.append((now - start, item))
            if now - start >= seconds:
                call.cancel()
                break
    return items


async def _serve(items: Items, port: int) -> None:
    async def subscribe(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        period = items[-1][0] + 0.1
        start = loop.time()
        while True:
            for offset, item in items:
                delay = start + offset - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                yield item
            start += period

    handler = grpc.method_handlers_generic_handler(
        "marketdata.v1.MarketData", {"Subscribe": grpc.unary_stream_rpc_method_handler(subscribe)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"READY {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop(0.2)


async def _read(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_stream(SUBSCRIBE, request_serializer=None, response_deserializer=None)(
            pb.SubscribeRequest(depth=MAX_DEPTH).SerializeToString()
        )
        parse = pb.SubscribeResponse.FromString
        first = True
        async for item in call:
            parse(item)
            if first:
                print("READING", flush=True)
                first = False


def floor_cpu(items: Items, seconds: float) -> tuple[float, float]:
    """CPU % of the bare server and the bare client over ``seconds``, exchanging ``items`` at their times."""
    path = Path(tempfile.mkdtemp(prefix="bench-idle-floor-")) / "items.pickle"
    path.write_bytes(pickle.dumps(items))
    port = free_port()
    try:
        serving = ["-m", "bench.idle_floor", "serve", "--items", str(path), "--port", str(port)]
        reading = ["-m", "bench.idle_floor", "read", "--address", f"127.0.0.1:{port}"]
        with started("floor-server", serving) as server:
            wait_for_output(server, "READY", 15)
            with started("floor-client", reading) as client:
                wait_for_output(client, "READING", 15)
                time.sleep(1.0)
                server_cpu, client_cpu = cpu_percent([server.ps, client.ps], seconds)
    finally:
        path.unlink(missing_ok=True)
        path.parent.rmdir()
    return server_cpu, client_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--items", type=Path, required=True)
    serve.add_argument("--port", type=int, required=True)
    read = sub.add_parser("read")
    read.add_argument("--address", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        if args.command == "serve":
            asyncio.run(_serve(pickle.loads(args.items.read_bytes()), args.port))
        else:
            asyncio.run(_read(args.address))


if __name__ == "__main__":
    main()
