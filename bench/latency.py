"""Row 3: feed event time to receipt by WebSocket clients of ``/ws/market_data/{id}?interval_ms=0``.

On a running stack (feed + dashboard): one WebSocket client per instrument in one client process
(``bench.ws_clients``), every live ``book`` message's staleness (receipt ``time.time_ns()`` minus its
``timestamp_ns``), p50 and p99, and whether lag grows (p50 of the last third of the window against the
first third); books sent as stale are left out of those figures and counted in the note. The feed's actual
level changes/s across all instruments is measured by a full-depth gRPC subscriber just before the clients
connect. Over the clients' window the feed's metrics are watched (``bench.feed_metrics``): each row's label
gives the feed's largest lag, and a row whose feed fell behind is flagged and does not pass.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bench.feed_metrics import FeedWatch, FeedWindow, mark
from bench.procs import client_result, started, wait_for_output
from bench.report import Result, at_most, info
from bench.stack import INSTRUMENT_IDS, Stack

__all__ = ["CHANGES_PER_EVENT", "LAG_GROWTH_MS", "high_rate_results", "low_rate_results", "measure", "rate_for"]

log = logging.getLogger(__name__)

# Level changes per second per unit of --rate per instrument (measured at full depth, bursts included: 15,120
# changes/s at --rate 1904.8 on the 7 instruments, with one message per instrument per engine wake-up).
CHANGES_PER_EVENT = 1.13
LAG_GROWTH_MS = 5.0


def rate_for(changes_per_s: float) -> float:
    """The --rate (order events per second per instrument) for about ``changes_per_s`` in total."""
    return round(changes_per_s / CHANGES_PER_EVENT / len(INSTRUMENT_IDS), 1)


def measure(stack: Stack, seconds: float, warmup: float) -> tuple[dict[str, Any], FeedWindow]:
    """The ws_clients summary for one interval_ms=0 client per instrument, and the feed over its window."""
    args = ["-m", "bench.ws_clients", "--base", stack.ws_base, "--instruments", ",".join(INSTRUMENT_IDS)]
    args += ["--clients", str(len(INSTRUMENT_IDS)), "--interval-ms", "0"]
    args += ["--warmup", f"{warmup}", "--seconds", f"{seconds}"]
    with started("ws-latency", args) as proc:
        wait_for_output(proc, "CONNECTED", 60)
        time.sleep(warmup)
        watch = FeedWatch(stack.metrics_url)
        watch.start()
        time.sleep(seconds)
        window = watch.stop()
        got = client_result(proc, 60)
    log.info("latency: %s; %s", got, window.text())
    return got, window


def _note(got: dict[str, Any]) -> str:
    return (
        f"{got['messages_per_s']:,.0f} book msgs/s to {got['clients']} clients, "
        f"{got['stale_messages']} stale books left out of the latency figures, max {got['max_ms']:.1f} ms, "
        f"p50 first third {got['first_third_p50_ms']:.2f} ms -> last third {got['last_third_p50_ms']:.2f} ms"
        + (f"; {got['connect_failures']} connections failed" if got["connect_failures"] else "")
    )


def low_rate_results(rate: float, measured: tuple[dict[str, Any], FeedWindow]) -> list[Result]:
    got, window = measured
    what = f"~1k changes/s (measured {rate:,.0f})"
    return mark([
        Result("3a", f"latency p50, {what}", got["p50_ms"], "ms", at_most(1.5, "< 1.5"), note=_note(got)),
        Result("3b", f"latency p99, {what}", got["p99_ms"], "ms", at_most(5.0, "< 5")),
    ], window)


def high_rate_results(rate: float, measured: tuple[dict[str, Any], FeedWindow]) -> list[Result]:
    got, window = measured
    what = f"~20k changes/s (measured {rate:,.0f})"
    growth = got["last_third_p50_ms"] - got["first_third_p50_ms"]
    return mark([
        Result("3c", f"latency p50, {what}", got["p50_ms"], "ms", info(), note=_note(got)),
        Result("3d", f"latency p99, {what}", got["p99_ms"], "ms", at_most(20.0, "< 20")),
        Result("3e", "lag growth at ~20k: p50 last third - first third", growth, "ms",
               at_most(LAG_GROWTH_MS, f"<= {LAG_GROWTH_MS:g} (no growth)")),
    ], window)
