"""Row 14: sharded feeds on NATS: two feeds, each simulating its own share of the instruments, publish more level
changes per second in total than one feed simulating all of them.

A private ``nats-server`` (Debian's) on a free 127.0.0.1 port. The baseline is one ``python -m feed_server --rate
RATE --publish URL`` with the 7 default instruments; the figure is two feeds on the same NATS with the same rate
per instrument, one with the first 4 instruments and one with the other 3. ``RATE`` is far above what one feed
keeps up with on this machine, so each feed runs as fast as it can. The changes are each feed's own
``marketdata_bus_published_changes_total`` (the level changes it handed to NATS), read when the window opens and
when it closes, after ``WARMUP_S``; the feeds' CPU over the same window is in the note.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence

import psutil

from bench.feed_metrics import scrape
from bench.feed_stream import feed_args
from bench.procs import Proc, free_port, started, wait_for_grpc_health
from bench.report import Result, at_least
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from tests.bus.support import running_nats

__all__ = ["RATE", "run"]

log = logging.getLogger(__name__)

RATE = 8_000.0
WARMUP_S = 1.0
CHANGES = "marketdata_bus_published_changes_total"



def _published(groups: Sequence[Sequence[str]], url: str, seconds: float) -> tuple[float, list[float]]:
    """Level changes per second all the feeds (one per group of instruments) published over the window, and
    each feed's CPU (% of a core) over it."""
    with contextlib.ExitStack() as stack:
        feeds: list[tuple[Proc, str]] = []
        for n, group in enumerate(groups):
            port, metrics_port = free_port(), free_port()
            args = [
                *feed_args(port, RATE, metrics_port=metrics_port),
                "--publish",
                url,
                "--instruments",
                ",".join(group),
            ]
            proc = stack.enter_context(started(f"feed-{n}", args))
            wait_for_grpc_health(proc, f"127.0.0.1:{port}", 15)
            feeds.append((proc, f"http://127.0.0.1:{metrics_port}/metrics"))
        time.sleep(WARMUP_S)
        processes = [psutil.Process(proc.pid) for proc, _ in feeds]
        cpu_before = [p.cpu_times() for p in processes]
        before = [scrape(metrics)[CHANGES] for _, metrics in feeds]
        start = time.monotonic()
        time.sleep(seconds)
        after = [scrape(metrics)[CHANGES] for _, metrics in feeds]
        elapsed = time.monotonic() - start
        cpu_after = [p.cpu_times() for p in processes]
    cpu = [
        100 * ((a.user + a.system) - (b.user + b.system)) / elapsed for a, b in zip(cpu_after, cpu_before, strict=True)
    ]
    return sum(a - b for a, b in zip(after, before, strict=True)) / elapsed, cpu


def run(quick: bool) -> list[Result]:
    seconds = 2.0 if quick else 6.0
    ids = [spec.instrument_id for spec in DEFAULT_INSTRUMENTS]
    with running_nats() as nats:
        url = nats.url
        one, one_cpu = _published([ids], url, seconds)
        two, two_cpu = _published([ids[:4], ids[4:]], url, seconds)
    log.info("sharding: one feed %.0f changes/s (CPU %s), two feeds %.0f (CPU %s)", one, one_cpu, two, two_cpu)
    return [
        Result(
            "14",
            f"sharded feeds on NATS at --rate {RATE:g}: two feeds (4 + 3 instruments), level changes published per s",
            two,
            "changes/s",
            at_least(0, "> 1 feed's"),
            baseline=one,
            min_ratio=1.0,
            note=(
                f"one feed with all 7 instruments: {one:,.0f} changes/s at {one_cpu[0]:.0f}% of a core; two feeds: "
                + ", ".join(f"{c:.0f}%" for c in two_cpu)
                + f" of a core; each feed's marketdata_bus_published_changes_total over {seconds:g} s"
            ),
        )
    ]
