"""Soak test: run the whole system at a high rate for a while and watch memory and latency.

    python -m scripts.soak --minutes 10 [--rate 200] [--ws-clients 20] [--tabs-equivalent 10]
                           [--interval 30] [--warmup-minutes 2]

Starts ``python -m feed_server`` and ``python -m dashboard`` as processes on free ports of 127.0.0.1, then
runs, in this process:

- ``--ws-clients`` WebSocket clients of ``/ws/market_data/{id}?depth=20&interval_ms=0`` spread over every
  instrument, each reading everything; the latency of a book message is its receipt time minus its
  ``timestamp_ns`` (the feed's event time; both clocks are this machine's wall clock);
- ``--tabs-equivalent`` page-equivalent pollers: each fetches ``GET /api/book/{id}?depth=30`` at 8 Hz (the
  page's refresh rate and depth-chart depth), a stand-in for the work one open tab causes.

Every ``--interval`` seconds it prints a table row: elapsed time, the dashboard's and the feed's RSS in MB,
their CPU use (% of one core, over the interval), the WebSocket latency p50/p99 in ms over the interval, and
the messages received. At the end a verdict: the dashboard's and the feed's RSS growth between the end of
the warm-up (``--warmup-minutes``, at most half the run) and the end, in MB and %. Exit code 0 when the
dashboard's RSS grew by less than 10% (and 20 MB) after warm-up and every client kept receiving, else 1.
Every child is killed at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import psutil
from websockets.asyncio.client import connect

from bench.procs import child_env, free_port
from feed_server import launch
from feed_server.launch import http_ok

REPO = Path(__file__).resolve().parents[1]
PAGE_HZ = 8.0
PAGE_DEPTH = 30
WS_DEPTH = 20
GROWTH_LIMIT_PCT = 10.0
GROWTH_LIMIT_MB = 20.0


def spawn(args: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, *args], cwd=REPO, env=child_env(), stdout=log, stderr=log, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None:
        return
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


@dataclass
class Stats:
    """What the clients saw since the last row (latencies in ns) and in total."""

    latencies: list[int] = field(default_factory=list)
    messages: int = 0
    total_messages: int = 0
    polls: int = 0
    poll_errors: int = 0
    ws_errors: int = 0
    per_client: dict[int, int] = field(default_factory=dict)  # client -> messages in this interval

    def take(self) -> tuple[list[int], int, int, dict[int, int]]:
        out = (self.latencies, self.messages, self.polls, self.per_client)
        self.latencies, self.messages, self.polls, self.per_client = [], 0, 0, {}
        return out


async def ws_client(index: int, url: str, stats: Stats, stop_at: float) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < stop_at:
        try:
            async with connect(url, max_size=2**22, open_timeout=10) as ws:
                while loop.time() < stop_at:
                    async with asyncio.timeout(10):
                        data = await ws.recv()
                    now = time.time_ns()
                    message = orjson.loads(data)
                    if message.get("type") != "book":
                        continue
                    stats.messages += 1
                    stats.total_messages += 1
                    stats.per_client[index] = stats.per_client.get(index, 0) + 1
                    if not message["stale"]:
                        stats.latencies.append(now - message["timestamp_ns"])
        except Exception as exc:  # counted and reported, then the client reconnects (CancelledError passes)
            stats.ws_errors += 1
            print(f"ws client {index}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            await asyncio.sleep(1.0)


async def page_poller(base: str, instrument_ids: list[str], index: int, stats: Stats, stop_at: float) -> None:
    loop = asyncio.get_running_loop()
    period = 1.0 / PAGE_HZ
    instrument_id = instrument_ids[index % len(instrument_ids)]
    async with httpx.AsyncClient(base_url=base, timeout=5.0) as client:
        next_at = loop.time()
        while loop.time() < stop_at:
            try:
                response = await client.get(f"/api/book/{instrument_id}", params={"depth": PAGE_DEPTH})
                response.raise_for_status()
                stats.polls += 1
            except httpx.HTTPError as exc:
                stats.poll_errors += 1
                print(f"poller {index}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            next_at += period
            await asyncio.sleep(max(0.0, next_at - loop.time()))


def percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


@dataclass
class Row:
    elapsed: float
    dash_rss: float
    feed_rss: float
    dash_cpu: float
    feed_cpu: float
    p50: float
    p99: float
    messages: int
    polls: int
    slowest_client: int
    load: float  # the machine's 1-minute load average (other processes compete for the CPU too)


HEADER = (
    f"{'elapsed':>8} {'dash MB':>8} {'feed MB':>8} {'dash CPU%':>9} {'feed CPU%':>9} "
    f"{'p50 ms':>7} {'p99 ms':>7} {'ws msgs':>8} {'msgs/s':>8} {'polls':>6} {'min/client':>10} {'load1':>6}"
)


def format_row(row: Row, interval: float) -> str:
    return (
        f"{row.elapsed:>7.0f}s {row.dash_rss:>8.1f} {row.feed_rss:>8.1f} {row.dash_cpu:>9.1f} {row.feed_cpu:>9.1f} "
        f"{row.p50:>7.2f} {row.p99:>7.2f} {row.messages:>8d} {row.messages / interval:>8.0f} {row.polls:>6d} "
        f"{row.slowest_client:>10d} {row.load:>6.2f}"
    )


async def soak(args: argparse.Namespace, base: str, ws_base: str, dash_pid: int, feed_pid: int) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=5.0) as client:
        instruments = [item["instrument_id"] for item in (await client.get("/api/instruments")).json()]
    loop = asyncio.get_running_loop()
    start = loop.time()
    stop_at = start + args.minutes * 60
    stats = Stats()
    tasks = [
        asyncio.create_task(
            ws_client(i, f"{ws_base}/ws/market_data/{instruments[i % len(instruments)]}?depth={WS_DEPTH}&interval_ms=0",
                      stats, stop_at),
            name=f"ws-client-{i}",
        )
        for i in range(args.ws_clients)
    ]
    tasks += [
        asyncio.create_task(page_poller(base, instruments, i, stats, stop_at), name=f"poller-{i}")
        for i in range(args.tabs_equivalent)
    ]
    dash, feed = psutil.Process(dash_pid), psutil.Process(feed_pid)
    dash.cpu_percent()
    feed.cpu_percent()
    rows: list[Row] = []
    warmup = min(args.warmup_minutes * 60, args.minutes * 30)
    print(
        f"soak: {args.minutes:g} min, rate {args.rate:g}/s per instrument x {len(instruments)} instruments, "
        f"{args.ws_clients} WebSocket clients (depth {WS_DEPTH}, interval_ms=0), {args.tabs_equivalent} "
        f"page-equivalent pollers ({PAGE_HZ:g} Hz, depth {PAGE_DEPTH}); warm-up {warmup:.0f} s",
        flush=True,
    )
    print(HEADER, flush=True)
    try:
        next_row = start + args.interval
        while True:
            await asyncio.sleep(max(0.0, min(next_row, stop_at) - loop.time()))
            now = loop.time()
            latencies, messages, polls, per_client = stats.take()
            interval = now - (start + rows[-1].elapsed if rows else start)
            row = Row(
                elapsed=now - start,
                dash_rss=dash.memory_info().rss / 2**20,
                feed_rss=feed.memory_info().rss / 2**20,
                dash_cpu=dash.cpu_percent(),
                feed_cpu=feed.cpu_percent(),
                p50=percentile(latencies, 0.50),
                p99=percentile(latencies, 0.99),
                messages=messages,
                polls=polls,
                slowest_client=min((per_client.get(i, 0) for i in range(args.ws_clients)), default=0),
                load=os.getloadavg()[0],
            )
            rows.append(row)
            print(format_row(row, max(interval, 1e-9)), flush=True)
            next_row += args.interval
            if now >= stop_at - 0.5:
                break
            for proc in (dash, feed):
                if not proc.is_running():
                    print(f"soak: process {proc.pid} died", flush=True)
                    return 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return verdict(rows, warmup, stats)


def verdict(rows: list[Row], warmup: float, stats: Stats) -> int:
    after = [r for r in rows if r.elapsed >= warmup - 1]
    if len(after) < 2:
        print("verdict: the run is too short to judge memory after warm-up", flush=True)
        return 1
    first, last = after[0], after[-1]
    ok = True
    for name, a, b in (("dashboard", first.dash_rss, last.dash_rss), ("feed", first.feed_rss, last.feed_rss)):
        growth = b - a
        pct = 100 * growth / a if a else float("nan")
        peak = max(r.dash_rss if name == "dashboard" else r.feed_rss for r in after)
        print(
            f"verdict: {name} RSS {a:.1f} MB at {first.elapsed:.0f} s -> {b:.1f} MB at {last.elapsed:.0f} s: "
            f"growth {growth:+.1f} MB ({pct:+.1f}%), peak {peak:.1f} MB after warm-up",
            flush=True,
        )
        if name == "dashboard" and growth > max(GROWTH_LIMIT_MB, a * GROWTH_LIMIT_PCT / 100):
            ok = False
    p99s = [r.p99 for r in after if r.p99 == r.p99]
    if p99s:
        print(
            f"verdict: WebSocket latency after warm-up: median of p50s {statistics.median(r.p50 for r in after):.2f}"
            " ms,"
            f" worst p99 {max(p99s):.2f} ms; {stats.total_messages} messages in total, "
            f"{stats.ws_errors} WebSocket errors, {stats.poll_errors} poll errors",
            flush=True,
        )
    starved = [r for r in after if r.slowest_client == 0]
    if starved:
        ok = False
        print(f"verdict: some client received nothing during {len(starved)} interval(s)", flush=True)
    print(f"verdict: {'PASS: memory flat after warm-up' if ok else 'FAIL'}", flush=True)
    return 0 if ok else 1


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    launch.wait_ready(url, lambda: http_ok(url), timeout, [process], interval=0.2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, required=True, help="how long to run")
    parser.add_argument("--rate", type=float, default=200.0, help="feed order events/s per instrument (200)")
    parser.add_argument("--ws-clients", type=int, default=20, help="WebSocket clients reading everything (20)")
    parser.add_argument("--tabs-equivalent", type=int, default=10, help="8 Hz /api/book pollers, one per tab (10)")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between table rows (30)")
    parser.add_argument("--warmup-minutes", type=float, default=2.0, help="warm-up excluded from the verdict (2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp"), help="where the children's logs go (/tmp)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.ws_clients < 0 or args.tabs_equivalent < 0 or args.interval <= 0:
        parser.error("--minutes and --interval must be positive, client counts not negative")

    feed_port, web_port = free_port(), free_port()
    feed: subprocess.Popen[bytes] | None = None
    dashboard: subprocess.Popen[bytes] | None = None
    feed_log, dash_log = args.log_dir / f"soak-feed-{feed_port}.log", args.log_dir / f"soak-dashboard-{web_port}.log"
    try:
        feed = spawn(["-m", "feed_server", "--host", "127.0.0.1", "--port", str(feed_port), "--seed", str(args.seed),
                      "--rate", str(args.rate)], feed_log)
        dashboard = spawn(["-m", "dashboard", "--feed-address", f"127.0.0.1:{feed_port}", "--host", "127.0.0.1",
                           "--port", str(web_port)], dash_log)
        base = f"http://127.0.0.1:{web_port}"
        wait_ready(f"{base}/api/book/{'AAPL'}", dashboard, 60.0)
        print(f"soak: feed pid {feed.pid} (log {feed_log}), dashboard pid {dashboard.pid} (log {dash_log})",
              flush=True)
        return asyncio.run(soak(args, base, f"ws://127.0.0.1:{web_port}", dashboard.pid, feed.pid))
    except KeyboardInterrupt:
        print("soak: interrupted", flush=True)
        return 1
    except RuntimeError as exc:
        print(f"soak: error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stop(dashboard)
        stop(feed)


if __name__ == "__main__":
    sys.exit(main())
