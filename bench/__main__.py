"""``python -m bench [--quick] [--json PATH] [--rows 1,2,...] [--repeat N] [--core python|compiled|both]``: run the
benchmark rows, print one table.

``--core`` chooses the book core the rows run on (feed_server.protocol.core): ``compiled``, ``python`` (the pure
path, as ``MARKETDATA_PURE_PYTHON=1``: every process the rows start runs it too), or ``both`` (the default where the
compiled core is built): the rows on the pure path first, in a child ``python -m bench --core python``, then on
the compiled one, in one table with the pure path's figure beside each row's.

With ``--repeat N`` the chosen rows are run N times over (all of them once, then again, so that each row's runs
are spread over the whole time) and the table gives each figure's min, median and max.

Exit code 0 when every row was measured (whether or not it met its target: targets are read, not gated,
since machines are noisy), 1 when a row could not be measured at all.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
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
from feed_server.protocol import core

log = logging.getLogger("bench")

RowRunner = Callable[[bool], list[Result]]

# (row ids, what, unit, runner): a runner returns the lines of its rows; when it raises, each row it owns
# gets an ERROR line.
ROWS: list[tuple[tuple[str, ...], str, str, RowRunner]] = [
    (("1",), "book apply", "levels/s", book_apply.run),
    (("2",), "feed stream", "changes/s", feed_stream.run),
    (("3a", "3b", "3c", "3d", "3e", "4a", "4b", "4c", "4d", "4e", "4f"), "latency / fan-out", "-", ws_rows.run),
    (("5", "6", "7a", "7b", "7c", "7d", "7e", "7f"), "tabs / start-up / idle", "-", system.run),
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


def _pure_figures(argv: list[str] | None, json_path: Path | None) -> dict[str, float]:
    """Every row's figure on the pure-Python core: the same rows run by a child ``--core python``, whose table is
    shown as it goes (on stderr) and whose results are kept beside ``json_path`` (``-python`` added)."""
    given = list(sys.argv[1:] if argv is None else argv)
    kept: list[str] = []
    skip = False
    for arg in given:  # the same arguments less --core and --json
        if skip:
            skip = False
        elif arg in ("--core", "--json"):
            skip = True
        elif not arg.startswith(("--core=", "--json=")):
            kept.append(arg)
    path = (
        json_path.with_name(json_path.stem + "-python" + json_path.suffix)
        if json_path is not None
        else Path(tempfile.mkdtemp()) / "bench-python.json"
    )
    log.info("the rows on the pure-Python core first (python -m bench --core python)")
    done = subprocess.run(
        [sys.executable, "-m", "bench", *kept, "--core", "python", "--json", str(path)], stdout=sys.stderr, check=False
    )
    if not path.exists():
        log.error("the pure-Python run wrote no results (exit code %d)", done.returncode)
        return {}
    results = json.loads(path.read_text())["results"]
    return {r["row"]: r["figure"] for r in results if r.get("figure") is not None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short form of every row (under a minute)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--rows", help="only the row groups whose first id is in this comma list (e.g. 1,2)")
    parser.add_argument(
        "--repeat", type=_positive, default=1, help="run the rows N times and print min/median/max (default 1)"
    )
    parser.add_argument(
        "--core",
        choices=("python", "compiled", "both"),
        help="the book core the rows run on (default: both where the compiled core is built, else python)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    built = core.CORE == "compiled" or (core.CORE_REASON or "").startswith(core.PURE_PYTHON_ENV)
    chosen = args.core or ("both" if built else "python")
    if chosen != "python" and not built:
        print(f"python -m bench: error: --core {chosen}: {core.CORE_REASON}", file=sys.stderr)
        return 1
    wants_pure = chosen == "python"
    if wants_pure != (core.CORE == "python"):  # the core is chosen at import: run again in the environment asked
        env = dict(os.environ)
        env.pop(core.PURE_PYTHON_ENV, None)
        if wants_pure:
            env[core.PURE_PYTHON_ENV] = "1"
        os.execve(sys.executable, [sys.executable, "-m", "bench", *(sys.argv[1:] if argv is None else argv)], env)
    wanted = set(args.rows.split(",")) if args.rows else None
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    pure = _pure_figures(argv, args.json) if chosen == "both" else {}
    log.info("core: %s", core.describe())
    runs: list[list[Result]] = []
    for n in range(1, args.repeat + 1):
        if args.repeat > 1:
            log.info("run %d of %d", n, args.repeat)
        runs.append(_run_rows(wanted, args.quick))
    results = combine(runs) if args.repeat > 1 else runs[0]
    for result in results:
        result.pure = pure.get(result.row)
    total = time.monotonic() - started
    print(render_table(results))
    load_after = os.getloadavg()[0]
    print(
        f"\n{'quick' if args.quick else 'full'} run{f' x{args.repeat}' if args.repeat > 1 else ''} on the "
        f"{'compiled core, the pure-Python core beside it' if pure else f'{core.CORE} core'}: "
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
            "core": "both" if pure else core.CORE,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json(args.json, results, meta)
    return 1 if any(r.error is not None for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
