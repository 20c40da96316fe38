"""A WebSocket client process for rows 3 and 4: many connections in one asyncio loop, then one JSON line.

``python -m bench.ws_clients --base ws://127.0.0.1:P --instruments A,B --clients N [--silent M]
--interval-ms X --warmup W --seconds S`` opens N reading connections to ``/ws/market_data/{id}`` (round
robin over the instruments) and M that never read (a small receive buffer, never ``recv``), prints
``CONNECTED`` when all are open, waits W seconds, then records S seconds: for every live ``book`` message its
receipt time and its staleness, ``time.time_ns()`` at receipt minus the message's ``timestamp_ns`` (the
feed's event time; same machine, same clock). A book sent with ``"stale": true`` (a gap, a resynchronisation,
a lost feed: its levels and ``timestamp_ns`` are the last verified ones) is left out of the staleness sample
and counted apart (``stale_messages``); it still counts as a message its client received.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

__all__ = ["Recorder", "main", "percentile", "summarize"]

CONNECT_CONCURRENCY = 64
OPEN_TIMEOUT_S = 30.0


@dataclass(slots=True)
class Recorder:
    """What the reading clients saw inside the measurement window."""

    window_start: float = float("inf")  # monotonic
    window_end: float = float("inf")
    counts: list[int] = field(default_factory=list)  # book messages per reading client
    samples: list[tuple[float, float]] = field(default_factory=list)  # live books: (monotonic receipt, staleness ms)
    stale_books: int = 0  # books sent with "stale": true, not in the samples
    trades: int = 0
    closed: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summarize(recorder: Recorder) -> dict[str, Any]:
    seconds = recorder.window_end - recorder.window_start
    lat = [ms for _, ms in recorder.samples]
    ordered = sorted(recorder.samples)
    third = len(ordered) // 3
    first = [ms for _, ms in ordered[:third]]
    last = [ms for _, ms in ordered[-third:]] if third else []
    rates = [count / seconds for count in recorder.counts]
    return {
        "seconds": seconds,
        "clients": len(recorder.counts),
        "messages": sum(recorder.counts),
        "messages_per_s": sum(recorder.counts) / seconds,
        "live_messages": len(lat),
        "per_client_median": statistics.median(rates) if rates else 0.0,
        "per_client_min": min(rates) if rates else 0.0,
        "p50_ms": percentile(lat, 0.5),
        "p99_ms": percentile(lat, 0.99),
        "max_ms": max(lat) if lat else float("nan"),
        "first_third_p50_ms": percentile(first, 0.5),
        "last_third_p50_ms": percentile(last, 0.5),
        "first_third_p99_ms": percentile(first, 0.99),
        "last_third_p99_ms": percentile(last, 0.99),
        "stale_messages": recorder.stale_books,
        "trades": recorder.trades,
        "closed": len(recorder.closed),
        "closed_reasons": sorted(set(recorder.closed))[:5],
    }


async def _read(ws: ClientConnection, index: int, recorder: Recorder) -> None:
    try:
        async for raw in ws:
            now_ns = time.time_ns()
            now = time.monotonic()
            if now < recorder.window_start or now > recorder.window_end:
                continue
            message = orjson.loads(raw)
            if message.get("type") != "book":
                recorder.trades += message.get("type") == "trade"
                continue
            recorder.counts[index] += 1
            if message.get("stale"):
                recorder.stale_books += 1
            else:
                recorder.samples.append((now, (now_ns - message["timestamp_ns"]) / 1e6))
    except ConnectionClosed as exc:
        recorder.closed.append(f"{exc.rcvd.code if exc.rcvd else 'none'}")
    except OSError as exc:
        recorder.closed.append(type(exc).__name__)


def _small_buffer_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, port))
    sock.setblocking(False)
    return sock


async def run(args: argparse.Namespace) -> dict[str, Any]:
    instruments = args.instruments.split(",")
    split = urlsplit(args.base)
    host, port = split.hostname or "127.0.0.1", split.port or 80
    query = f"?interval_ms={args.interval_ms}" + (f"&depth={args.depth}" if args.depth else "")
    recorder = Recorder(counts=[0] * args.clients)
    limiter = asyncio.Semaphore(args.concurrency)

    failures: list[str] = []

    async def open_one(index: int, silent: bool) -> ClientConnection | None:
        url = f"{args.base}/ws/market_data/{instruments[index % len(instruments)]}{query}"
        async with limiter:
            try:
                if silent:
                    return await connect(
                        url, sock=_small_buffer_socket(host, port), max_queue=1, open_timeout=args.open_timeout,
                        compression=None,
                    )
                return await connect(url, open_timeout=args.open_timeout, compression=None, max_size=None)
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                failures.append(type(exc).__name__)
                return None

    # The whole connect phase is bounded: connections still pending at the deadline count as failures.
    opening = [asyncio.create_task(open_one(i, False), name=f"ws-open-{i}") for i in range(args.clients)]
    opening += [asyncio.create_task(open_one(i, True), name=f"ws-open-silent-{i}") for i in range(args.silent)]
    done, pending = await asyncio.wait(opening, timeout=args.connect_timeout)
    for task in pending:
        task.cancel()
        failures.append("ConnectPhaseTimeout")
    await asyncio.gather(*pending, return_exceptions=True)
    results = [task.result() if task in done else None for task in opening]
    opened = results[: args.clients]
    silent = [ws for ws in results[args.clients :] if ws is not None]
    readers = [ws for ws in opened if ws is not None]
    tasks = [
        asyncio.create_task(_read(ws, i, recorder), name=f"ws-reader-{i}")
        for i, ws in enumerate(opened)
        if ws is not None
    ]
    print("CONNECTED", flush=True)
    recorder.window_start = time.monotonic() + args.warmup
    recorder.window_end = recorder.window_start + args.seconds
    try:
        await asyncio.sleep(args.warmup + args.seconds + 0.05)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ws in [*readers, *silent]:
            ws.transport.abort()  # no closing handshake: a busy server must not hold the measurement up
    recorder.window_end = min(recorder.window_end, time.monotonic())
    summary = summarize(recorder)
    summary["connect_failures"] = len(failures)
    summary["connect_failure_kinds"] = sorted(set(failures))
    summary["opened"] = len(readers) + len(silent)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True, help="ws://127.0.0.1:PORT")
    parser.add_argument("--instruments", required=True, help="comma-separated instrument ids")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--silent", type=int, default=0, help="connections that never read")
    parser.add_argument("--interval-ms", type=int, default=0)
    parser.add_argument("--depth", type=int, default=0, help="0: the server's default")
    parser.add_argument("--connect-timeout", type=float, default=60.0, help="bound on the whole connect phase")
    parser.add_argument(
        "--concurrency", type=int, default=CONNECT_CONCURRENCY, help="handshakes in flight at once (a burst: all)"
    )
    parser.add_argument("--open-timeout", type=float, default=OPEN_TIMEOUT_S, help="bound on each opening handshake")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    from bench.procs import raise_fd_limit

    raise_fd_limit(4 * (args.clients + args.silent) + 256)
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
