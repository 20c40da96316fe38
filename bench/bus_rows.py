"""Rows 15 and 16: the feed publishing on NATS, against its gRPC fan-out.

One private ``nats-server`` (Debian's, the tests' own: tests/bus/support.py) on a free 127.0.0.1 port serves both.

Row 15, the feed's CPU as dashboards are added, at about 5,000 level changes/s (``latency.rate_for``): one
``python -m feed_server`` serving its dashboards over gRPC (each dashboard is a subscriber of its own, serialised
for it by the feed), then another started with ``--publish URL`` whose dashboards read ``nats://`` (the feed
publishes each message once, whatever the number of readers). On each feed, 1 dashboard, then 2, then 4 (the
running ones kept, the new ones started beside them). Before each window every dashboard must be consuming: its
REST ``/api/book/{id}`` answers a live (not stale) book for every instrument and its ``/metrics``
``marketdata_book_messages_total`` moves. After a warm-up (2 s; 0.3 s with --quick) the feed's CPU times (psutil)
are read when the window opens and when it closes (8 s later; 1.5 s with --quick): % of a core over the window
alone. The dashboards' CPU (and nats-server's) over the same window, the messages each dashboard applied and the
feed's events/s (its CPU per event, since the simulator's event rate varies from window to window) are in the
note. 15b/15c show the gRPC growth over 15a (their baseline); 15e/15f must stay within 10% of 15d. Every line
carries the feed's lag over its window (``bench.feed_metrics``), and is flagged if the feed fell behind.

Row 16, row 3a/3b's latency through NATS: a feed at about 1,000 level changes/s with ``--publish``, a dashboard
on ``nats://``, one ``interval_ms=0`` JSON WebSocket client per instrument (``latency.measure``): feed event time to
receipt, p50 and p99, with the feed's lag beside them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from bench import latency
from bench.feed_metrics import EVENTS, RESYNCS, SUBSCRIBERS, FeedWatch, FeedWindow, mark, scrape, wait_for_subscribers
from bench.feed_stream import feed_args
from bench.procs import Proc, free_port, started, wait_for_grpc_health
from bench.report import Result, Target, at_most, guarded, info
from bench.stack import INSTRUMENT_IDS, Stack, measure_change_rate
from tests.bus.support import NatsServer, running_nats
from tests.waiting import wait_until

__all__ = ["CPU_CHANGES_PER_S", "DASHBOARDS", "LATENCY_CHANGES_PER_S", "NATS_GROWTH", "run"]

log = logging.getLogger(__name__)

CPU_CHANGES_PER_S = 5_000
LATENCY_CHANGES_PER_S = 1_000
DASHBOARDS = (1, 2, 4)
NATS_GROWTH = 1.10  # 15e/15f: at most this times 15d
LIVE_TIMEOUT_S = 60.0
MESSAGES = "marketdata_book_messages_total"  # the dashboard's
BUILT = "marketdata_messages_published_total"  # the feed's, for its gRPC subscribers
BUS_PUBLISHED = "marketdata_bus_published_total"


@dataclass(frozen=True, slots=True)
class Dashboard:
    proc: Proc
    base: str  # http://127.0.0.1:PORT

    @property
    def metrics_url(self) -> str:
        return f"{self.base}/metrics"


@dataclass(frozen=True, slots=True)
class Window:
    """One configuration's window: the feed's CPU, each dashboard's CPU and applied messages/s, nats-server's CPU."""

    dashboards: int
    seconds: float
    feed_cpu: float
    dashboard_cpu: list[float]
    dashboard_messages_per_s: list[float]
    nats_cpu: float | None
    feed: FeedWindow

    def note(self) -> str:
        seconds, events = self.feed.seconds, self.feed.delta(EVENTS)
        per_s = ", ".join(f"{m:,.0f}" for m in self.dashboard_messages_per_s)
        cpu = ", ".join(f"{c:.0f}" for c in self.dashboard_cpu)
        per_event = self.feed_cpu * self.seconds * 1e4 / events if events else float("nan")
        out = (
            f"feed {events / seconds:,.0f} events/s ({per_event:.0f} µs CPU/event), "
            f"{self.feed.delta(BUILT) / seconds:,.0f} subscriber msgs built/s"
        )
        if self.nats_cpu is not None:
            out += f", {self.feed.delta(BUS_PUBLISHED) / seconds:,.0f} msgs/s published on NATS"
        publisher = " (the NATS publisher is one)" if self.nats_cpu is not None else ""
        out += (
            f", {self.feed.last[SUBSCRIBERS]:.0f} fan-out subscriber(s){publisher}, "
            f"{self.feed.delta(RESYNCS):.0f} subscriber resyncs"
        )
        out += f"; dashboards' CPU {cpu}% core, book msgs/s each applied {per_s}"
        return out + (f"; nats-server {self.nats_cpu:.1f}% core" if self.nats_cpu is not None else "")


def _windows(quick: bool) -> tuple[float, float]:
    """(warm-up, window) seconds for row 15."""
    return (0.3, 1.5) if quick else (2.0, 8.0)



@contextlib.contextmanager
def _feed(rate: float, publish: str | None) -> Iterator[tuple[Proc, str, str]]:
    """A feed (publishing to ``publish`` when given), ready: (process, gRPC address, its /metrics URL)."""
    port, metrics_port = free_port(), free_port()
    args = feed_args(port, rate, metrics_port=metrics_port)
    if publish is not None:
        args += ["--publish", publish]
    address = f"127.0.0.1:{port}"
    with started("feed" if publish is None else "feed-nats", args) as feed:
        wait_for_grpc_health(feed, address, 15)
        yield feed, address, f"http://127.0.0.1:{metrics_port}/metrics"


def _start_dashboard(stack: contextlib.ExitStack, feed_address: str, n: int) -> Dashboard:
    port = free_port()
    args = ["-m", "dashboard", "--feed-address", feed_address, "--host", "127.0.0.1", "--port", str(port)]
    proc = stack.enter_context(started(f"dashboard-{n}", args))
    return Dashboard(proc, f"http://127.0.0.1:{port}")


def _books_live(base: str) -> bool:
    """Every instrument's book is served by the dashboard at ``base`` and is not stale."""
    for instrument_id in INSTRUMENT_IDS:
        try:
            with urllib.request.urlopen(f"{base}/api/book/{instrument_id}", timeout=2) as response:
                book = json.loads(response.read())
        except (OSError, ValueError):  # urllib.error.URLError/HTTPError (503 before the first book) are OSErrors
            return False
        if book.get("stale") is not False or book.get("sequence") is None:
            return False
    return True


def _messages(dashboard: Dashboard) -> float:
    return scrape(dashboard.metrics_url)[MESSAGES]


def _wait_consuming(dashboards: Sequence[Dashboard], timeout: float) -> None:
    """Wait until every dashboard serves live books and its applied-message counter moves (bounded)."""
    waiting = list(dashboards)

    def all_live() -> bool:
        for dashboard in waiting:
            dashboard.proc.check_alive()
        waiting[:] = [d for d in waiting if not _books_live(d.base)]
        return not waiting

    wait_until(all_live, timeout, lambda: f"{waiting[0].proc.name} had no live books:\n{waiting[0].proc.tail()}",
               every=0.2)
    before = [_messages(d) for d in dashboards]
    stuck = list(dashboards)

    def all_moving() -> bool:
        stuck[:] = [d for d, b in zip(dashboards, before, strict=True) if _messages(d) <= b]
        return not stuck

    wait_until(all_moving, timeout, lambda: f"{stuck[0].proc.name} applied no message", every=0.3)


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _window(feed: Proc, metrics_url: str, dashboards: Sequence[Dashboard], nats: psutil.Process | None,
            seconds: float) -> Window:
    """CPU (psutil, over the window alone) and applied messages over one window of ``seconds``."""
    processes = [feed.ps, *(d.proc.ps for d in dashboards), *([nats] if nats is not None else [])]
    watch = FeedWatch(metrics_url)
    watch.start()
    messages_before = [_messages(d) for d in dashboards]
    cpu_before = [_cpu_seconds(p) for p in processes]
    start = time.monotonic()
    time.sleep(seconds)
    cpu_after = [_cpu_seconds(p) for p in processes]
    elapsed = time.monotonic() - start
    messages_after = [_messages(d) for d in dashboards]
    feed_window = watch.stop()
    for dashboard in dashboards:
        dashboard.proc.check_alive()
    cpu = [100 * (a - b) / elapsed for a, b in zip(cpu_after, cpu_before, strict=True)]
    got = Window(
        dashboards=len(dashboards),
        seconds=elapsed,
        feed_cpu=cpu[0],
        dashboard_cpu=cpu[1 : 1 + len(dashboards)],
        dashboard_messages_per_s=[(a - b) / elapsed for a, b in zip(messages_after, messages_before, strict=True)],
        nats_cpu=cpu[-1] if nats is not None else None,
        feed=feed_window,
    )
    log.info("feed CPU over %s with %d dashboard(s): %.1f%% core; %s; %s", "NATS" if nats is not None else "gRPC",
             len(dashboards), got.feed_cpu, got.note(), feed_window.text())
    return got


def _feed_cpu(rate: float, nats: NatsServer | None, quick: bool) -> list[Window]:
    """One window per count of ``DASHBOARDS`` on one feed: over gRPC, or through ``nats`` when given."""
    warmup, seconds = _windows(quick)
    nats_ps = None if nats is None or nats.process is None else psutil.Process(nats.process.pid)
    windows: list[Window] = []
    publish = None if nats is None else nats.url
    with _feed(rate, publish) as (feed, address, metrics_url), contextlib.ExitStack() as stack:
        dashboards: list[Dashboard] = []
        for count in DASHBOARDS:
            new = [_start_dashboard(stack, publish or address, n) for n in range(len(dashboards), count)]
            dashboards += new
            _wait_consuming(new, LIVE_TIMEOUT_S)
            log.info("%d dashboard(s) consuming", len(dashboards))
            if nats is None:
                wait_for_subscribers(metrics_url, count, 15, [feed, *(d.proc for d in dashboards)])
            time.sleep(warmup)
            windows.append(_window(feed, metrics_url, dashboards, nats_ps, seconds))
    return windows


def _line(row: str, label: str, window: Window, target: Target, baseline: Window | None, note: str = "") -> Result:
    """One row 15 line, the feed's lag over its window on its label (flagged if the feed fell behind)."""
    result = Result(
        row,
        label,
        window.feed_cpu,
        "% core",
        target,
        baseline=None if baseline is None else baseline.feed_cpu,
        note=window.note() + note,
    )
    return mark([result], window.feed)[0]


def _grpc_results(rate: float, windows: list[Window]) -> list[Result]:
    """15a-15c: over gRPC; 15b and 15c have 15a as baseline, their ratio is the growth (no target)."""
    one, two, four = windows
    what = f"~5k changes/s (--rate {rate:g})"
    growth = "; baseline 15a (1 dashboard): the ratio is the growth"
    return [
        _line("15a", f"feed CPU, 1 dashboard over gRPC, {what}", one, info(), None),
        _line("15b", f"feed CPU, {two.dashboards} dashboards over gRPC", two, info(), one, growth),
        _line("15c", f"feed CPU, {four.dashboards} dashboards over gRPC", four, info(), one, growth),
    ]


def _nats_results(rate: float, windows: list[Window]) -> list[Result]:
    """15d-15f: on NATS; 15e and 15f at most ``NATS_GROWTH`` times 15d, their baseline."""
    one, two, four = windows
    what = f"~5k changes/s (--rate {rate:g})"
    limit = NATS_GROWTH * one.feed_cpu
    target = at_most(limit, f"<= {NATS_GROWTH:g}x 15d ({limit:.1f})")
    growth = "; baseline 15d (1 dashboard on NATS)"
    return [
        _line("15d", f"feed CPU, 1 dashboard on NATS (--publish), {what}", one, info(), None),
        _line("15e", f"feed CPU, {two.dashboards} dashboards on NATS", two, target, one, growth),
        _line("15f", f"feed CPU, {four.dashboards} dashboards on NATS", four, target, one, growth),
    ]


@contextlib.contextmanager
def _nats_stack(rate: float, url: str) -> Iterator[Stack]:
    """A feed publishing to ``url`` and a dashboard reading ``nats://``, its books live on entry."""
    with _feed(rate, url) as (feed, address, metrics_url), contextlib.ExitStack() as stack:
        dashboard = _start_dashboard(stack, url, 0)
        _wait_consuming([dashboard], LIVE_TIMEOUT_S)
        yield Stack(feed, dashboard.proc, address, dashboard.base, metrics_url)


def _latency_results(rate: float, measured: tuple[dict[str, Any], FeedWindow]) -> list[Result]:
    got, window = measured
    what = f"through NATS, ~1k changes/s (measured {rate:,.0f})"
    note = (
        f"dashboard on nats://, {got['messages_per_s']:,.0f} book msgs/s to {got['clients']} clients, "
        f"{got['stale_messages']} stale books left out, max {got['max_ms']:.1f} ms, "
        f"p50 first third {got['first_third_p50_ms']:.2f} ms -> last third {got['last_third_p50_ms']:.2f} ms"
        + (f"; {got['connect_failures']} connections failed" if got["connect_failures"] else "")
    )
    return mark([
        Result("16a", f"latency p50 {what}", got["p50_ms"], "ms", at_most(2.0, "< 2"), note=note),
        Result("16b", f"latency p99 {what}", got["p99_ms"], "ms", at_most(8.0, "< 8")),
    ], window)


def _latency(url: str, quick: bool) -> list[Result]:
    seconds, warmup = (2.0, 0.5) if quick else (12.0, 2.0)
    with _nats_stack(latency.rate_for(LATENCY_CHANGES_PER_S), url) as stack:
        measured_rate = measure_change_rate(stack.feed_address, 0.5 if quick else 3.0)
        return _latency_results(measured_rate, latency.measure(stack, seconds, warmup))



def run(quick: bool) -> list[Result]:
    """Rows 15a-15f (the feed's CPU with 1, 2, 4 dashboards, gRPC then NATS) and 16a/16b (latency through NATS)."""
    rate = latency.rate_for(CPU_CHANGES_PER_S)
    with running_nats() as nats:
        return [
            *guarded(("15a", "15b", "15c"), "feed CPU over gRPC",
                      lambda: _grpc_results(rate, _feed_cpu(rate, None, quick))),
            *guarded(("15d", "15e", "15f"), "feed CPU on NATS",
                      lambda: _nats_results(rate, _feed_cpu(rate, nats, quick))),
            *guarded(("16a", "16b"), "latency through NATS", lambda: _latency(nats.url, quick)),
        ]
