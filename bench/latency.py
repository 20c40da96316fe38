"""Row 3: feed event time to receipt by WebSocket clients of ``/ws/market_data/{id}?interval_ms=0``.

At two feed rates (about 1,000 and about 20,000 level changes/s across all instruments, the actual rate
measured by a full-depth gRPC subscriber before the clients connect): one WebSocket client per instrument
in one client process, every ``book`` message's staleness (receipt ``time.time_ns()`` minus its
``timestamp_ns``), p50 and p99, and whether lag grows (p50 of the last third of the window against the
first third).
"""

from __future__ import annotations

import logging
from typing import Any

from bench.procs import run_client
from bench.report import Result, at_most, info
from bench.stack import INSTRUMENT_IDS, measure_change_rate, running_stack

__all__ = ["CHANGES_PER_EVENT", "rate_for", "run", "ws_latency"]

log = logging.getLogger(__name__)

# Level changes per order event in the simulator (measured), to turn changes/s into --rate.
CHANGES_PER_EVENT = 1.1
LAG_GROWTH_MS = 5.0


def rate_for(changes_per_s: float) -> float:
    """The --rate (order events per second per instrument) for about ``changes_per_s`` in total."""
    return round(changes_per_s / CHANGES_PER_EVENT / len(INSTRUMENT_IDS), 1)


def ws_latency(ws_base: str, seconds: float, warmup: float) -> dict[str, Any]:
    args = ["-m", "bench.ws_clients", "--base", ws_base, "--instruments", ",".join(INSTRUMENT_IDS)]
    args += ["--clients", str(len(INSTRUMENT_IDS)), "--interval-ms", "0"]
    args += ["--warmup", f"{warmup}", "--seconds", f"{seconds}"]
    return run_client("ws-latency", args, warmup + seconds + 60)


def _measure(target: float, seconds: float, warmup: float) -> tuple[float, dict[str, Any]]:
    with running_stack(rate_for(target)) as stack:
        actual = measure_change_rate(stack.feed_address, 1.0 if seconds < 5 else 2.0)
        got = ws_latency(stack.ws_base, seconds, warmup)
    log.info("latency at %.0f changes/s: %s", actual, got)
    return actual, got


def run(quick: bool) -> list[Result]:
    seconds, warmup = (3.0, 0.5) if quick else (15.0, 2.0)
    low_rate, low = _measure(1_000, seconds, warmup)
    high_rate, high = _measure(20_000, seconds, warmup)
    growth = high["last_third_p50_ms"] - high["first_third_p50_ms"]
    low_growth = low["last_third_p50_ms"] - low["first_third_p50_ms"]
    low_note = f"{low['messages_per_s']:,.0f} WS msgs/s to 7 clients, max {low['max_ms']:.1f} ms"
    high_note = f"{high['messages_per_s']:,.0f} WS msgs/s to 7 clients, max {high['max_ms']:.1f} ms"
    return [
        Result("3a", f"latency p50, ~1k changes/s (measured {low_rate:,.0f})", low["p50_ms"], "ms",
               at_most(1.5, "< 1.5"), note=low_note),
        Result("3b", f"latency p99, ~1k changes/s (measured {low_rate:,.0f})", low["p99_ms"], "ms",
               at_most(5.0, "< 5"), note=f"p50 drift first->last third {low_growth:+.2f} ms"),
        Result("3c", f"latency p50, ~20k changes/s (measured {high_rate:,.0f})", high["p50_ms"], "ms", info(),
               note=high_note),
        Result("3d", f"latency p99, ~20k changes/s (measured {high_rate:,.0f})", high["p99_ms"], "ms",
               at_most(50.0, "< 50")),
        Result("3e", "lag growth at ~20k: p50 last third - first third", growth, "ms",
               at_most(LAG_GROWTH_MS, f"<= {LAG_GROWTH_MS:g} (no growth)"),
               note=f"first third p50 {high['first_third_p50_ms']:.2f} ms, last {high['last_third_p50_ms']:.2f} ms"),
    ]
