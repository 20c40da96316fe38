"""``python -m feed_server.record``: record a feed, describe a recording, export it as CSV.

    python -m feed_server.record --address HOST:PORT --out FILE [--instruments ID,...] [--depth N]
                                 [--duration S | --count N]
    python -m feed_server.record --info FILE
    python -m feed_server.record --export FILE --format csv --out PATH

Exit codes: 0 on success (a recording ended by --duration, --count, SIGINT or SIGTERM included); 1 for a bad
option, a feed that cannot be reached within a few seconds at the start, a feed that refuses the request, or a
file that is not a recording (one error line on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from feed_server.cli_args import OneLineArgumentParser, float_in, host_port, int_in
from feed_server.protocol.book import MAX_DEPTH
from feed_server.protocol.core import log_core
from feed_server.protocol.errors import MarketDataError
from feed_server.record.inspect import export_csv, info_text, summarise
from feed_server.record.recorder import RecordOptions, RecordSummary, record

CONNECT_TIMEOUT = 3.0


def _instrument_ids(text: str) -> list[str]:
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise argparse.ArgumentTypeError("no instrument given")
    if len(set(ids)) != len(ids):
        raise argparse.ArgumentTypeError("an instrument is repeated")
    return ids


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m feed_server.record",
        description="Record a feed's stream into a .mdrec file (--address, --out), describe a recording (--info), "
        "or export its books and trades as CSV (--export, --format csv, --out).",
        epilog=f"The recorder gives up (exit 1) when the feed does not answer ListInstruments within "
        f"{CONNECT_TIMEOUT:g} s at the start; once recording, a lost connection or a restarted feed is retried with "
        "backoff into the same file (a new session). It stops at --duration, --count, SIGINT or SIGTERM, closes the "
        "file cleanly and exits 0. Exit code 1: a bad option, an unreachable feed, a refused request, a file that "
        "is not a recording.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--address", type=host_port, help="record the feed at HOST:PORT")
    action.add_argument("--info", type=Path, metavar="FILE", help="describe a recording")
    action.add_argument("--export", type=Path, metavar="FILE", help="export a recording (with --format, --out)")
    parser.add_argument("--out", type=Path, metavar="PATH", help="the recording to write, or the export's CSV file")
    parser.add_argument("--instruments", type=_instrument_ids, help="comma-separated ids to record (default: all)")
    parser.add_argument(
        "--depth", type=int_in(1, MAX_DEPTH), help=f"levels per side to record (1..{MAX_DEPTH}, default {MAX_DEPTH})"
    )
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument(
        "--duration", type=float_in(0.0, 1e9, low_open=True), help="stop after S seconds (default: at Ctrl-C)"
    )
    limit.add_argument("--count", type=int_in(1), help="stop after N stream items")
    parser.add_argument("--format", choices=("csv",), help="the export's format (csv)")
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), default="WARNING", type=str.upper)
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options that belong to another action are refused, not ignored."""
    recording = ("instruments", "depth", "duration", "count")
    if args.address is not None:
        allowed = {"out", *recording}
        if args.out is None:
            parser.error("--address needs --out FILE (the recording to write)")
    elif args.export is not None:
        allowed = {"out", "format"}
        if args.format is None or args.out is None:
            parser.error("--export needs --format csv and --out PATH")
    else:
        allowed = set()
    for name in ("out", "format", *recording):
        if getattr(args, name) is not None and name not in allowed:
            action = "--address" if args.address else "--export" if args.export else "--info"
            parser.error(f"--{name} does not go with {action}")


def _summary_line(out: Path, summary: RecordSummary) -> str:
    sessions = len(summary.sessions)
    reconnects = f", {summary.reconnects} reconnects" if summary.reconnects else ""
    return (
        f"recorded {summary.items} items ({sessions} session{'' if sessions == 1 else 's'}{reconnects}), "
        f"{summary.bytes} bytes in {summary.seconds:.1f} s to {out}"
    )


async def _record(options: RecordOptions) -> RecordSummary:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        return await record(options, stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    log_core()
    try:
        if args.info is not None:
            print(info_text(summarise(args.info)))
        elif args.export is not None:
            exported = export_csv(args.export, args.out)
            print(
                f"exported {exported.book_rows} book rows to {args.out} and {exported.trade_rows} trades to "
                f"{exported.trades_path}"
            )
        else:
            options = RecordOptions(
                address=args.address,
                out=args.out,
                instrument_ids=args.instruments or (),
                depth=args.depth or MAX_DEPTH,
                duration=args.duration,
                count=args.count,
                connect_timeout=CONNECT_TIMEOUT,
            )
            print(_summary_line(args.out, asyncio.run(_record(options))))
    except MarketDataError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
