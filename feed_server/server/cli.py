"""The feed server's command line, ``python -m feed_server``: run the gRPC feed until SIGINT or SIGTERM, playing
the simulation, or with ``--replay FILE [--speed 1|10|max] [--loop] [--original-times]`` a recording
(feed_server.server.replay).

Exit codes: 0 after SIGINT or SIGTERM; 1 for a bad option, a file that is not a whole recording, or an address
it cannot listen on (one error line);
2 when the feed broke (its engine failed: logged once with its traceback, health NOT_SERVING, streams ended
with UNAVAILABLE), so that a supervisor (run.py, systemd) notices and restarts it.

For tests only: the environment variable ``FEED_TEST_CRASH_AFTER_EVENTS=N`` makes the engine fail on purpose
after N events, to test what a broken feed does (never set it in production).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from feed_server.bus.connection import BusUnavailable
from feed_server.cli_args import OneLineArgumentParser, float_in, int_in, nats_url, port_number
from feed_server.defaults import DEFAULT_PORT
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec
from feed_server.record.format import BadRecording
from feed_server.server.exchanges.adapter import ExchangeAdapter, SourceUnavailable
from feed_server.server.exchanges.choice import EXCHANGES, SIMULATOR, SourceOptions, make_adapter, open_live_source
from feed_server.server.fanout import DEFAULT_MAX_BACKLOG
from feed_server.server.faults import FAULT_KINDS, parse_fault_kinds
from feed_server.server.feed import serve
from feed_server.server.nats_publisher import DuplicateInstrument
from feed_server.server.replay import ReplaySource

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
CRASH_AFTER_EVENTS_ENV = "FEED_TEST_CRASH_AFTER_EVENTS"  # tests only (see the module docstring)
EXIT_BROKEN = 2  # the feed broke: its engine failed


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


def replay_speed(text: str) -> float | None:
    """An argparse type: ``max`` (None: as fast as the subscribers take it) or a speed factor, 0.01 to 1000."""
    if text.strip().lower() == "max":
        return None
    try:
        return float_in(0.01, 1000.0)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a factor from 0.01 to 1000 (1, 10, ...) or max, got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m feed_server",
        description="Run the gRPC market data feed (simulated, or a recording replayed) until SIGINT or SIGTERM.",
        epilog=f"Exit codes: 0 after SIGINT or SIGTERM, 1 for a bad option, a file that is not a whole recording "
        "or a port it cannot listen on, "
        f"{EXIT_BROKEN} when the feed broke (its engine failed). For tests only: {CRASH_AFTER_EVENTS_ENV}=N makes "
        "the engine fail on purpose after N events.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT}, 0: any)"
    )
    parser.add_argument(
        "--source",
        choices=(SIMULATOR, *EXCHANGES),
        default=SIMULATOR,
        help="what the feed plays: the simulation (default), or a real exchange's public order books",
    )
    parser.add_argument(
        "--symbols",
        type=_symbols,
        help="with --source binance|kraken|coinbase: the exchange's symbols, comma-separated (BTCUSDT,ETHUSDT; "
        "BTC/USD,ETH/USD; BTC-USD,ETH-USD)",
    )
    parser.add_argument(
        "--source-url",
        metavar="URL",
        help="with --source binance|kraken|coinbase: the exchange's WebSocket endpoint (default: its public one)",
    )
    parser.add_argument(
        "--source-rest-url",
        metavar="URL",
        help="with --source binance|coinbase: the exchange's REST base (default https://api.binance.com, "
        "https://api.coinbase.com)",
    )
    parser.add_argument(
        "--source-rest-weight-share",
        type=float_in(0.0, 1.0, low_open=True),
        metavar="SHARE",
        help="with --source binance: the share of the address's REST weight limit (exchangeInfo's rateLimits, "
        "6,000 a minute today) the feed may use, 0 < SHARE <= 1 (default 0.5)",
    )
    parser.add_argument(
        "--source-renew-after",
        type=float_in(0.0, 86_400.0, low_open=True),
        metavar="SECONDS",
        help="with --source binance: renew the WebSocket connection after this many seconds, new before old, "
        "with no stale book (default 84600: Binance ends every connection after 24 h)",
    )
    parser.add_argument(
        "--replay",
        type=Path,
        metavar="FILE",
        help="play a recording (python -m feed_server.record) instead of the simulation",
    )
    parser.add_argument(
        "--speed",
        type=replay_speed,
        default=1.0,
        help="with --replay: 1 plays in the recorded time, 10 ten times faster, max as fast as the subscribers "
        "take it (default 1)",
    )
    parser.add_argument("--loop", action="store_true", help="with --replay: start again at the end, as a new session")
    parser.add_argument(
        "--original-times",
        action="store_true",
        help="with --replay: keep the recorded event times (default: moved so the first message is now)",
    )
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
        default=None,
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
    parser.add_argument(
        "--metrics-port",
        type=int_in(1, 65535),
        default=None,
        help="also serve Prometheus metrics on http://HOST:N/metrics (default: off)",
    )
    parser.add_argument(
        "--publish",
        type=nats_url,
        metavar="URL",
        help="also publish every message to the NATS server at URL (nats://HOST:PORT; default: off)",
    )
    parser.add_argument("--log-level", choices=_LEVELS, default="INFO", type=str.upper)
    return parser


def _crash_after_events(parser: argparse.ArgumentParser) -> int | None:
    """The test hook's value from the environment (None when unset); a bad value is one error line, exit 1."""
    text = os.environ.get(CRASH_AFTER_EVENTS_ENV, "").strip()
    if not text:
        return None
    try:
        return int_in(1)(text)
    except argparse.ArgumentTypeError as exc:
        parser.error(f"{CRASH_AFTER_EVENTS_ENV}: {exc}")


def _replay_source(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ReplaySource | None:
    """The --replay source (None without it), the file read and checked: a bad one is one error line, exit 1."""
    if args.replay is None:
        for flag, given in (
            ("--speed", args.speed != 1.0),
            ("--loop", args.loop),
            ("--original-times", args.original_times),
        ):
            if given:
                parser.error(f"{flag} applies to --replay only")
        return None
    if args.instruments is not None:
        parser.error("--instruments does not apply to --replay (a replay serves the recorded instruments)")
    try:
        return ReplaySource(args.replay, speed=args.speed, loop=args.loop, original_times=args.original_times)
    except BadRecording as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")


def _symbols(text: str) -> list[str]:
    symbols = [part.strip() for part in text.split(",") if part.strip()]
    if not symbols:
        raise argparse.ArgumentTypeError("no symbol given")
    if len(set(symbols)) != len(symbols):
        raise argparse.ArgumentTypeError(f"a symbol is given twice in {text!r}")
    return symbols


def _live_adapter(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ExchangeAdapter | None:
    """The --source exchange's adapter (None for the simulation); a flag that does not fit is one error line."""
    if args.source == SIMULATOR:
        for flag, given in (
            ("--symbols", args.symbols),
            ("--source-url", args.source_url),
            ("--source-rest-url", args.source_rest_url),
            ("--source-rest-weight-share", args.source_rest_weight_share),
            ("--source-renew-after", args.source_renew_after),
        ):
            if given is not None:
                parser.error(f"{flag} applies to --source binance|kraken|coinbase only")
        return None
    if args.symbols is None:
        parser.error(f"--source {args.source} needs --symbols")
    for flag, given in (("--replay", args.replay), ("--instruments", args.instruments)):
        if given is not None:
            parser.error(f"{flag} does not apply to --source {args.source}")
    try:
        options = SourceOptions(args.source_rest_weight_share, args.source_renew_after)
        return make_adapter(args.source, args.symbols, args.source_url, args.source_rest_url, options)
    except ValueError as exc:
        parser.error(str(exc))


async def _serve_live(adapter: ExchangeAdapter, **kwargs: object) -> str | None:
    """The exchange's instruments first (SourceUnavailable: nothing is served), then the feed on them."""
    return await serve(source=await open_live_source(adapter), **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    crash_after_events = _crash_after_events(parser)
    if args.metrics_port is not None and args.metrics_port == args.port:
        parser.error(f"--metrics-port {args.metrics_port} is the gRPC --port; give it another port")
    adapter = _live_adapter(parser, args)
    replay = _replay_source(parser, args)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if args.log_level != "DEBUG":  # httpx logs every request at INFO (an exchange's REST snapshots): noise
        logging.getLogger("httpx").setLevel(logging.WARNING)
    options: dict[str, object] = {
        "host": args.host,
        "port": args.port,
        "seed": args.seed,
        "rate": args.rate,
        "instruments": args.instruments or DEFAULT_INSTRUMENTS,
        "max_backlog": args.max_backlog,
        "fault_rate": args.fault_rate,
        "fault_kinds": args.fault_kinds,
        "crash_after_events": crash_after_events,
        "metrics_port": args.metrics_port,
        "publish_url": args.publish,
    }
    try:
        if adapter is not None:
            failure = asyncio.run(_serve_live(adapter, **options))
        else:
            failure = asyncio.run(serve(source=replay, **options))
    except (OSError, BusUnavailable, DuplicateInstrument, SourceUnavailable) as exc:  # nothing was served: one line
        print(f"{parser.prog}: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0 if failure is None else EXIT_BROKEN


if __name__ == "__main__":
    sys.exit(main())
