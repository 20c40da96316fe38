"""Row 4: fan-out to many WebSocket clients at ``interval_ms=100``, plus clients that never read.

On a stack whose feed runs at about 20,000 level changes/s, two client processes (``bench.ws_clients``) share the
reading and the silent connections, spread over every instrument. Figures: the median reading client's
book messages per second, p99 staleness over every live book received (books sent as stale are left out and
counted in the note), and the dashboard's RSS (psutil) before the clients, when the window starts and at its end.
The window opens one second after every client has connected. Over it the feed's metrics are watched
(``bench.feed_metrics``): 4a and 4b give the feed's largest lag, and are flagged (not passed) if the feed fell
behind.
"""

from __future__ import annotations

import logging
import statistics
import time
from contextlib import ExitStack

from bench.feed_metrics import FeedWatch, mark
from bench.procs import client_result, started
from bench.report import Result, at_least, at_most
from bench.stack import INSTRUMENT_IDS, Stack

__all__ = ["measure"]

log = logging.getLogger(__name__)

MB = 1024 * 1024


CONNECT_TIMEOUT_S = 60.0


def _client_args(ws_base: str, clients: int, silent: int, warmup: float, seconds: float) -> list[str]:
    args = ["-m", "bench.ws_clients", "--base", ws_base, "--instruments", ",".join(INSTRUMENT_IDS)]
    args += ["--clients", str(clients), "--silent", str(silent), "--interval-ms", "100"]
    args += ["--connect-timeout", f"{CONNECT_TIMEOUT_S}"]
    return [*args, "--warmup", f"{warmup}", "--seconds", f"{seconds}"]


def measure(stack: Stack, rate: float, quick: bool) -> list[Result]:
    """Row 4 on a running stack whose feed publishes ``rate`` level changes/s."""
    clients, silent, processes = (100, 5, 1) if quick else (1_000, 50, 2)
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
