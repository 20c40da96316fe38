"""Row 4: fan-out to many WebSocket clients at ``interval_ms=100``, plus clients that never read; 2,000 of them;
and a burst of connections opening at once.

On a stack whose feed runs at about 20,000 level changes/s, two client processes (``bench.ws_clients``) share the
reading and the silent connections, spread over every instrument. Figures: the median reading client's
book messages per second, p99 staleness over every live book received (books sent as stale are left out and
counted in the note), and the dashboard's RSS (psutil) before the clients, when the window starts and at its end.
The window opens one second after every client has connected. Over it the feed's metrics are watched
(``bench.feed_metrics``): 4a and 4b give the feed's largest lag, and are flagged (not passed) if the feed fell
behind. 4e is the same with 2,000 reading clients and 100 silent ones: its p99 staleness. 4f is a connection
burst: while 100 reading clients stream, one process opens 1,000 more all at once (no limit on handshakes in
flight), each handshake bounded at 5 s: the figure is how many opened, and the note says whether any of the 100
readers was dropped.
"""

from __future__ import annotations

import logging
import statistics
import time
from contextlib import ExitStack

from bench.feed_metrics import FeedWatch, mark
from bench.procs import client_result, started, wait_for_output
from bench.report import Result, at_least, at_most, guarded
from bench.stack import INSTRUMENT_IDS, Stack

__all__ = ["measure"]

log = logging.getLogger(__name__)

MB = 1024 * 1024


CONNECT_TIMEOUT_S = 60.0


BURST = 1_000  # connections opened at once in 4f
BURST_OPEN_S = 5.0  # each one's opening handshake bound
BURST_READERS = 100  # reading clients streaming through the burst


def _client_args(
    ws_base: str, clients: int, silent: int, warmup: float, seconds: float, *extra: str
) -> list[str]:
    args = ["-m", "bench.ws_clients", "--base", ws_base, "--instruments", ",".join(INSTRUMENT_IDS)]
    args += ["--clients", str(clients), "--silent", str(silent), "--interval-ms", "100"]
    args += ["--connect-timeout", f"{CONNECT_TIMEOUT_S}", *extra]
    return [*args, "--warmup", f"{warmup}", "--seconds", f"{seconds}"]


def measure(stack: Stack, rate: float, quick: bool) -> list[Result]:
    """Rows 4a to 4f on a running stack whose feed publishes ``rate`` level changes/s."""
    clients, silent = (100, 5) if quick else (1_000, 50)
    rows = _fan_out(stack, rate, quick, clients, silent)
    many, many_silent = (200, 10) if quick else (2_000, 100)
    rows += guarded(("4e",), "fan-out 2,000 clients", lambda: [_many(stack, rate, quick, many, many_silent)])
    rows += guarded(("4f",), "connection burst", lambda: [_burst(stack, quick)])
    return rows


def _many(stack: Stack, rate: float, quick: bool, clients: int, silent: int) -> Result:
    """Row 4e: 4b's p99 with ``clients`` reading clients."""
    msgs, p99 = _fan_out(stack, rate, quick, clients, silent)[:2]
    return Result(
        "4e", f"fan-out p99 staleness, {clients} clients + {silent} silent, ~20k changes/s", p99.figure, "ms",
        at_most(250, "< 250"), note=f"{p99.note}; median {msgs.figure:.2f} msgs/s per client ({msgs.note})",
        flag=p99.flag,
    )


def _burst(stack: Stack, quick: bool) -> Result:
    """Row 4f: ``BURST`` connections opened at once while ``BURST_READERS`` clients stream."""
    burst = 200 if quick else BURST
    seconds = 2.0 if quick else 5.0
    reading = _client_args(stack.ws_base, BURST_READERS, 0, 0.5, 2 * BURST_OPEN_S + seconds)
    with started("ws-burst-readers", reading) as readers:
        wait_for_output(readers, "CONNECTED", CONNECT_TIMEOUT_S)
        burst_args = _client_args(
            stack.ws_base, burst, 0, 0.0, seconds,
            "--concurrency", str(burst), "--open-timeout", f"{BURST_OPEN_S}", "--connect-timeout", f"{BURST_OPEN_S}",
        )
        with started("ws-burst", burst_args) as opener:
            opened = client_result(opener, CONNECT_TIMEOUT_S)
        read = client_result(readers, CONNECT_TIMEOUT_S + 30)
    return Result(
        "4f",
        f"connection burst: {burst} WebSocket clients opening at once, ~20k changes/s, {BURST_READERS} reading",
        opened["opened"],
        "opened",
        at_least(burst, f">= {burst} in {BURST_OPEN_S:g} s"),
        note=(
            f"{opened['connect_failures']} did not open in {BURST_OPEN_S:g} s "
            f"({', '.join(opened['connect_failure_kinds']) or 'none'}); the {BURST_READERS} readers: "
            f"{read['closed']} dropped, median {read['per_client_median']:.1f} msgs/s, p99 {read['p99_ms']:.1f} ms"
        ),
        flag="" if read["closed"] == 0 else f"{read['closed']} readers dropped",
    )


def _fan_out(stack: Stack, rate: float, quick: bool, clients: int, silent: int) -> list[Result]:
    """Rows 4a to 4d with ``clients`` reading and ``silent`` silent clients over two processes."""
    processes = 1 if quick else 2
    seconds, warmup = (3.0, 1.0) if quick else (20.0, 1.0)
    rss_before = stack.dashboard.ps.memory_info().rss / MB
    with ExitStack() as procs:
        workers = [
            procs.enter_context(
                started(f"ws-fanout-{n}", _client_args(stack.ws_base, clients // processes, silent // processes,
                                                        warmup, seconds))
            )
            for n in range(processes)
        ]
        deadline = time.monotonic() + CONNECT_TIMEOUT_S + 60 + seconds
        while not all("CONNECTED" in w.output() for w in workers):
            for w in workers:
                w.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("fan-out clients did not connect in time")
            time.sleep(0.1)
        connect_time = time.monotonic()
        time.sleep(warmup)
        watch = FeedWatch(stack.metrics_url)
        watch.start()
        rss_start = stack.dashboard.ps.memory_info().rss / MB
        samples = [rss_start]
        while any(w.popen.poll() is None for w in workers):
            stack.dashboard.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("fan-out clients did not finish in time")
            if time.monotonic() < connect_time + warmup + seconds:
                samples.append(stack.dashboard.ps.memory_info().rss / MB)
            elif watch.running:
                watch.stop()
            time.sleep(0.25)
        window = watch.stop()
        rss_end = samples[-1]
        results = [client_result(w, 10) for w in workers]
    log.info("fan-out at %.0f changes/s: %s", rate, results)
    median_rate = statistics.median(r["per_client_median"] for r in results)
    p99 = max(r["p99_ms"] for r in results)
    closed = sum(r["closed"] for r in results)
    growth = rss_end - rss_start
    flat = max(20.0, 0.1 * rss_start)
    label = f"{clients} clients + {silent} silent, ~20k changes/s (measured {rate:,.0f})"
    timed = [
        Result("4a", f"fan-out msgs/s per client (median), {label}", median_rate, "msgs/s", at_least(9.5, ">= 9.5"),
               note=f"slowest client {min(r['per_client_min'] for r in results):.1f} msgs/s; "
               f"{closed} reading clients closed by the server, "
               f"{sum(r['connect_failures'] for r in results)} connections failed"),
        Result("4b", "fan-out p99 staleness (feed event -> receipt)", p99, "ms", at_most(100, "< 100"),
               note=f"p50 {statistics.median(r['p50_ms'] for r in results):.1f} ms; "
               f"{sum(r['stale_messages'] for r in results)} stale books left out"),
    ]
    return [
        *mark(timed, window),
        Result("4c", "fan-out dashboard RSS at the end", rss_end, "MB", at_most(500, "< 500"),
               note=f"before clients {rss_before:.0f} MB, window start {rss_start:.0f} MB, max {max(samples):.0f} MB"),
        Result("4d", f"fan-out dashboard RSS growth over the {seconds:g} s window", growth, "MB",
               at_most(flat, f"<= {flat:.0f} (flat)")),
    ]
