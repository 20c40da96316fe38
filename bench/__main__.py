"""``python -m bench [--quick] [--json PATH] [--rows 1,2,...] [--repeat N]``: run the benchmark rows, print one table.

With ``--repeat N`` the chosen rows are run N times over (all of them once, then again, so that each row's runs
are spread over the whole time) and the table gives each figure's min, median and max.

Exit code 0 when every row was measured (whether or not it met its target: targets are read, not gated,
since machines are noisy), 1 when a row could not be measured at all.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from bench import (
    book_apply,
    bus_rows,
    costs,
    engine_ceiling,
    feed_stream,
    recording,
    replay,
    sharding,
    subscriber_ceiling,
    system,
    ws_rows,
)
from bench.report import Result, combine, error_result, render_table, write_json

log = logging.getLogger("bench")

RowRunner = Callable[[bool], list[Result]]

# (row ids, what, unit, runner): a runner returns the lines of its rows; when it raises, each row it owns
# gets an ERROR line.
ROWS: list[tuple[tuple[str, ...], str, str, RowRunner]] = [
    (("1",), "book apply", "levels/s", book_apply.run),
    (("2",), "feed stream", "changes/s", feed_stream.run),
    (("3a", "3b", "3c", "3d", "3e", "4a", "4b", "4c", "4d"), "latency / fan-out", "-", ws_rows.run),
    (("5", "6", "7a", "7b", "7c", "7d"), "tabs / start-up / idle", "-", system.run),
    (("8",), "subscriber library ceiling", "changes/s", subscriber_ceiling.run),
    (("9a", "9b"), "feed cost", "-", costs.feed_cost),
    (("10a", "10b"), "dashboard cost", "-", costs.consumer_cost),
    (("11",), "engine ceiling", "events/s", engine_ceiling.run),
    (("12",), "replay at full speed", "changes/s", replay.run),
    (("13a", "13b"), "recording", "-", recording.run),
    (("14",), "sharded feeds on NATS", "changes/s", sharding.run),
    (("15a", "15b", "15c", "15d", "15e", "15f", "16a", "16b"), "feed CPU per dashboard / latency on NATS", "-",
     bus_rows.run),
]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _run_rows(wanted: set[str] | None, quick: bool) -> list[Result]:
    """One run of every wanted row group, in table order."""
    results: list[Result] = []
    for ids, what, unit, runner in ROWS:
        if wanted is not None and not wanted.intersection(i.rstrip("abcdefgh") for i in ids):
            continue
        log.info("row %s: %s", "/".join(ids), what)
        row_start = time.monotonic()
        try:
            results.extend(runner(quick))
        except Exception as exc:
            log.exception("row %s failed", "/".join(ids))
            results.extend(error_result(i, what, unit, f"{type(exc).__name__}: {exc}".splitlines()[0]) for i in ids)
        log.info("row %s done in %.1f s", "/".join(ids), time.monotonic() - row_start)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short form of every row (under a minute)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--rows", help="only the row groups whose first id is in this comma list (e.g. 1,2)")
    parser.add_argument(
        "--repeat", type=_positive, default=1, help="run the rows N times and print min/median/max (default 1)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    wanted = set(args.rows.split(",")) if args.rows else None
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    runs: list[list[Result]] = []
    for n in range(1, args.repeat + 1):
        if args.repeat > 1:
            log.info("run %d of %d", n, args.repeat)
        runs.append(_run_rows(wanted, args.quick))
    results = combine(runs) if args.repeat > 1 else runs[0]
    total = time.monotonic() - started
    print(render_table(results))
    load_after = os.getloadavg()[0]
    print(
        f"\n{'quick' if args.quick else 'full'} run{f' x{args.repeat}' if args.repeat > 1 else ''}: "
        f"{total:.0f} s on {psutil.cpu_count()} cores, "
        f"1-min load average {load_before:.1f} before, {load_after:.1f} after"
    )
    if args.json is not None:
        meta: dict[str, object] = {
            "quick": args.quick,
            "repeat": args.repeat,
            "seconds": total,
            "cores": psutil.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json(args.json, results, meta)
    return 1 if any(r.error is not None for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
