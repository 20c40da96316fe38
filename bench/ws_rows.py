"""Rows 3 and 4 on two stacks (feed + dashboard): latency at ~1k changes/s, then at ~20k latency and fan-out.

The ~20k stack serves both row 3's high-rate lines and row 4, which saves a dashboard start-up. A part that
fails gives ERROR lines for its own rows only.
"""

from __future__ import annotations

import logging

from bench import fanout, latency
from bench.report import Result, guarded
from bench.stack import measure_change_rate, running_stack

__all__ = ["run"]

log = logging.getLogger(__name__)



def run(quick: bool) -> list[Result]:
    seconds, warmup = (3.0, 1.0) if quick else (15.0, 2.0)
    rate_window = 1.0 if quick else 3.0
    results: list[Result] = []
    with running_stack(latency.rate_for(1_000)) as stack:
        low_rate = measure_change_rate(stack.feed_address, rate_window)
        results += guarded(
            ("3a", "3b"),
            "latency ~1k",
            lambda: latency.low_rate_results(low_rate, latency.measure(stack, seconds, warmup)),
        )
    with running_stack(latency.rate_for(20_000)) as stack:
        high_rate = measure_change_rate(stack.feed_address, rate_window)
        results += guarded(
            ("3c", "3d", "3e"),
            "latency ~20k",
            lambda: latency.high_rate_results(high_rate, latency.measure(stack, seconds, warmup)),
        )
        results += guarded(
            ("4a", "4b", "4c", "4d", "4e", "4f"), "fan-out", lambda: fanout.measure(stack, high_rate, quick)
        )
    return results
