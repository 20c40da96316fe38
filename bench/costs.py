"""Rows 9 and 10: what the feed and the dashboard cost per event and per level change at ~20,000 changes/s.

Row 9, feed cost: ``python -m feed_server`` at the rate giving about 20,000 level changes/s
(``latency.rate_for``), with one full-depth subscriber that only receives and counts (``bench.stream_client
--bare --depth 100``, its own process). Over the window the bench reads the feed process's CPU times (psutil)
and its metrics (``marketdata_events_total``, ``bench.feed_metrics``) at both ends: CPU µs per order event
(heartbeats included; there are none at this rate) and % of a core.

Row 10, consumer cost: the same feed with ``python -m dashboard`` as its subscriber, no browser and no
WebSocket client. The dashboard's CPU is divided by the level changes the feed sent at the dashboard's depth
(100) over the same window: a bare counting subscriber at depth 100 (``bench.stream_client --bare --cpu-pid``)
counts them and reads the dashboard's CPU times when its window opens and when it closes, so both figures
cover exactly the same window. The counting subscriber is a second subscriber of the feed (the feed has no
counter of level changes); it costs the feed, not the dashboard.
"""

from __future__ import annotations

import logging
import time

import psutil

from bench.feed_metrics import EVENTS, RESYNCS, FeedWatch, FeedWindow, wait_for_subscribers
from bench.feed_stream import feed_args
from bench.latency import rate_for
from bench.procs import client_result, free_port, run_client, started, wait_for_grpc_health
from bench.report import Result, at_most
from bench.stack import running_stack

__all__ = ["CHANGES_PER_S", "consumer_cost", "feed_cost"]

log = logging.getLogger(__name__)

CHANGES_PER_S = 20_000
DEPTH = 100  # the dashboard's depth (feed_server.protocol.book.MAX_DEPTH)


def _windows(quick: bool) -> tuple[float, float]:
    """(warm-up, window) seconds."""
    return (1.0, 2.0) if quick else (2.0, 10.0)


def _counting_client(address: str, seconds: float, cpu_pid: int | None = None) -> list[str]:
    args = ["-m", "bench.stream_client", "--address", address, "--seconds", f"{seconds}", "--bare"]
    args += ["--depth", str(DEPTH)]
    return args if cpu_pid is None else [*args, "--cpu-pid", str(cpu_pid)]


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _watched_cpu(process: psutil.Process, metrics_url: str, seconds: float) -> tuple[FeedWindow, float, float]:
    """(the feed's metrics over the window, the process's CPU seconds in it, the window's length)."""
    watch = FeedWatch(metrics_url)
    watch.start()
    cpu_before, start = _cpu_seconds(process), time.monotonic()
    time.sleep(seconds)
    cpu, elapsed = _cpu_seconds(process) - cpu_before, time.monotonic() - start
    return watch.stop(), cpu, elapsed


def feed_cost(quick: bool) -> list[Result]:
    """Rows 9a (CPU µs per event) and 9b (% of a core) for the feed with one full-depth subscriber."""
    warmup, seconds = _windows(quick)
    rate = rate_for(CHANGES_PER_S)
    port, metrics_port = free_port(), free_port()
    address, metrics_url = f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
    with started("feed", feed_args(port, rate, metrics_port=metrics_port)) as feed:
        wait_for_grpc_health(feed, address, 15)
        # The subscriber outlasts the window: it subscribes, the warm-up passes, then the window.
        with started("counting-client", _counting_client(address, warmup + seconds + 2)) as client:
            wait_for_subscribers(metrics_url, 1, 15, [feed, client])
            time.sleep(warmup)
            window, cpu, elapsed = _watched_cpu(feed.ps, metrics_url, seconds)
            client.check_alive()  # still reading when the window closed
            got = client_result(client, 30)
    events = window.delta(EVENTS)
    log.info("feed cost at --rate %g: %.3f s CPU over %.2f s, %d events; subscriber %s", rate, cpu, elapsed, events,
             got)
    note = (
        f"{events / elapsed:,.0f} events/s over {elapsed:.1f} s, {window.text()}, "
        f"{window.delta(RESYNCS):.0f} subscriber resyncs; the subscriber (depth {DEPTH}, receives and counts) got "
        f"{got['changes_per_s']:,.0f} changes/s"
    )
    what = f"~20k changes/s (--rate {rate:g}), 1 full-depth subscriber"
    return [
        Result("9a", f"feed cost: CPU per order event, {what}", cpu * 1e6 / events if events else float("nan"),
               "µs/event", at_most(25, "<= 25"), note=note),
        Result("9b", f"feed cost: CPU, {what}", 100 * cpu / elapsed, "% core", at_most(35, "<= 35")),
    ]


def consumer_cost(quick: bool) -> list[Result]:
    """Rows 10a (CPU µs per level change) and 10b (% of a core) for the dashboard with no client."""
    warmup, seconds = _windows(quick)
    rate = rate_for(CHANGES_PER_S)
    with running_stack(rate) as stack:
        time.sleep(warmup)
        watch = FeedWatch(stack.metrics_url)
        watch.start()
        args = _counting_client(stack.feed_address, seconds, cpu_pid=stack.dashboard.pid)
        got = run_client("counting-client", args, seconds + 30)
        window = watch.stop()
        stack.dashboard.check_alive()
    log.info("consumer cost at --rate %g: %s", rate, got)
    changes, cpu = got["changes"], got["cpu_seconds"]
    note = (
        f"{changes:,} level changes at depth {DEPTH} over {got['cpu_window_s']:.1f} s "
        f"({got['changes_per_s']:,.0f}/s, counted by a bare subscriber beside the dashboard), "
        f"{window.text()}, {window.delta(RESYNCS):.0f} subscriber resyncs"
    )
    what = f"~20k changes/s (--rate {rate:g}), no browser or socket"
    return [
        Result("10a", f"dashboard cost: CPU per level change, {what}",
               cpu * 1e6 / changes if changes else float("nan"), "µs/change", at_most(10, "<= 10"), note=note),
        Result("10b", f"dashboard cost: CPU, {what}", got["cpu_percent"], "% core", at_most(20, "<= 20")),
    ]
