"""The feed server's command line, ``python -m feed_server``: run the simulated gRPC feed until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from feed_server.cli_args import OneLineArgumentParser, float_in, int_in, port_number
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec
from feed_server.server.fanout import DEFAULT_MAX_BACKLOG
from feed_server.server.faults import FAULT_KINDS, parse_fault_kinds
from feed_server.server.grpc_server import serve

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _instruments(text: str) -> tuple[InstrumentSpec, ...]:
    by_id = {spec.instrument_id: spec for spec in DEFAULT_INSTRUMENTS}
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise argparse.ArgumentTypeError("no instrument given")
    for iid in ids:
        if iid not in by_id:
            raise argparse.ArgumentTypeError(f"unknown instrument {iid!r} (choose from {', '.join(by_id)})")
    if len(set(ids)) != len(ids):
        raise argparse.ArgumentTypeError("an instrument is repeated")
    return tuple(by_id[iid] for iid in ids)


def _fault_kinds(text: str) -> frozenset[str]:
    try:
        return parse_fault_kinds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="python -m feed_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=50051, help="port to listen on (default 50051, 0: any)")
    parser.add_argument("--seed", type=int, default=1, help="random seed; the same seed gives the same feed")
    parser.add_argument(
        "--rate",
        type=float_in(0.0, 1_000_000.0, low_open=True),
        default=50.0,
        help="order events per second per instrument (default 50)",
    )
    parser.add_argument(
        "--instruments",
        type=_instruments,
        default=DEFAULT_INSTRUMENTS,
        help="comma-separated instrument ids (default: all of "
        + ",".join(spec.instrument_id for spec in DEFAULT_INSTRUMENTS)
        + ")",
    )
    parser.add_argument(
        "--max-backlog",
        type=int_in(1),
        default=DEFAULT_MAX_BACKLOG,
        help=f"messages buffered per subscriber before it is resynchronised (default {DEFAULT_MAX_BACKLOG})",
    )
    parser.add_argument(
        "--fault-rate",
        type=float_in(0.0, 1.0),
        default=0.0,
        help="fraction of each subscriber's messages to fault (testing)",
    )
    parser.add_argument(
        "--fault-kinds",
        type=_fault_kinds,
        default=frozenset(FAULT_KINDS),
        help="comma-separated faults to inject: " + ",".join(FAULT_KINDS) + " (default: all)",
    )
    parser.add_argument("--log-level", choices=_LEVELS, default="INFO", type=str.upper)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        asyncio.run(
            serve(
                host=args.host,
                port=args.port,
                seed=args.seed,
                rate=args.rate,
                instruments=args.instruments,
                max_backlog=args.max_backlog,
                fault_rate=args.fault_rate,
                fault_kinds=args.fault_kinds,
            )
        )
    except OSError as exc:
        logging.getLogger("feed_server").error("cannot serve: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
