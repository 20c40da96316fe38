"""Run the whole product: the feed server and the dashboard, each as its own process.

    python run.py [--host 127.0.0.1] [--port 8000] [--feed-port 50051] [--feed-address HOST:PORT]
                  [--seed 1] [--rate 50] [--feed-metrics-port N] [--replay FILE [--speed N|max] [--loop]]
                  [--bus nats://HOST:PORT] [--source binance|kraken|coinbase --symbols S1,S2
                  [--source-url URL] [--source-rest-url URL] [--source-rest-weight-share X]
                  [--source-renew-after SECONDS]]

Starts ``python -m feed_server`` (unless ``--feed-address`` names a feed that is already running) and
``python -m dashboard``, waits until the feed reports SERVING on the gRPC health service and the page answers,
prints the URLs, and on Ctrl-C or SIGTERM stops both (dashboard first) and exits 0. If a child does not come up
in time, run.py prints one error line, stops the other and exits 1. If either child exits (while starting or
later), run.py prints one line naming it and its exit code
(``run.py: the feed server (pid N) exited with code 2; stopping the dashboard``), stops the other and exits 1.

With ``--replay FILE`` the feed plays that recording (``python -m feed_server --replay``, ``--speed`` and
``--loop`` passed on) instead of the simulation; a file that is not a recording, or was recorded at a depth under
100 (the dashboard's), is one error line and exit 1 before anything starts.

With ``--source binance|kraken|coinbase --symbols ...`` the feed plays that exchange's public order books instead
of the simulation (``--source-url``, ``--source-rest-url``, ``--source-rest-weight-share`` and
``--source-renew-after`` passed on, the feed checks them); an exchange that cannot give the symbols'
metadata makes the feed exit 1 with its one error line, and run.py then names it.

With ``--bus nats://HOST:PORT`` the feed also publishes to that (running) NATS server (``--publish``) and the
dashboard consumes from NATS rather than from the feed's gRPC port. A NATS server that cannot be reached is one
error line and exit 1 before anything starts (within ``--start-timeout``, at most 5 s).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from feed_server.bus.connection import BusUnavailable, connect
from feed_server.cli_args import OneLineArgumentParser, host_port, int_in, nats_url, port_number
from feed_server.client.health import feed_serving
from feed_server.defaults import DEFAULT_PORT
from feed_server.launch import StartupError, child_env, http_ok, wait_ready
from feed_server.protocol.book import MAX_DEPTH
from feed_server.record.format import BadRecording, RecordingReader
from feed_server.server.exchanges.choice import EXCHANGES, SIMULATOR

FEED_START_TIMEOUT = 15.0
DASHBOARD_START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
BUS_CHECK_TIMEOUT = 5.0


class _Stop:
    """Set by SIGINT/SIGTERM."""

    requested = False
    signum = 0


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _Stop.requested = True
    _Stop.signum = signum


def _spawn(args: Sequence[str]) -> subprocess.Popen[bytes]:
    # Its own session: a terminal's Ctrl-C reaches only this process, which stops the children in order.
    return subprocess.Popen([sys.executable, *args], env=child_env(), start_new_session=True)


def _stop(child: subprocess.Popen[bytes] | None) -> None:
    if child is None or child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"run.py: process {child.pid} did not stop within {STOP_TIMEOUT:g} s; killing it", file=sys.stderr)
        child.kill()
        child.wait()


_Child = tuple[str, subprocess.Popen[bytes]]  # a child process and what it is ("feed server", "dashboard")


def _exited(children: Sequence[_Child]) -> _Child | None:
    """The first of the named children that has exited, if any."""
    for name, child in children:
        if child.poll() is not None:
            return name, child
    return None


def _death_line(dead: _Child, children: Sequence[_Child]) -> str:
    """``run.py: the feed server (pid N) exited with code C; stopping the dashboard``."""
    name, child = dead
    code = child.returncode
    how = f"exited with code {code}"
    if code < 0:
        try:
            how += f" ({signal.Signals(-code).name})"
        except ValueError:
            pass
    others = [other for other, process in children if process is not child]
    stopping = f"; stopping the {' and the '.join(others)}" if others else ""
    return f"run.py: the {name} (pid {child.pid}) {how}{stopping}"


def _host_for_url(host: str) -> str:
    if host in {"0.0.0.0", "::"}:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _check_recording(parser: OneLineArgumentParser, path: str) -> None:
    """One error line (exit 1) for a file the replay could not play or the dashboard could not show."""
    try:
        depth = RecordingReader(Path(path)).header.depth
    except BadRecording as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    if depth < MAX_DEPTH:
        parser.exit(
            1,
            f"{parser.prog}: error: {path} was recorded at depth {depth}; the dashboard needs {MAX_DEPTH} "
            "(the recorder's default); serve it with python -m feed_server --replay for depth-limited clients\n",
        )


def _check_bus(parser: OneLineArgumentParser, url: str, timeout: float) -> None:
    """One error line (exit 1) when the NATS server at ``url`` does not accept a connection within ``timeout``."""

    async def reach() -> None:
        link = await connect(url, name="run.py", timeout=timeout)
        await link.close()

    try:
        asyncio.run(reach())
    except BusUnavailable as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog="python run.py", description="Run the feed server and the dashboard.")
    parser.add_argument("--host", default="127.0.0.1", help="dashboard address (default %(default)s)")
    parser.add_argument("--port", type=port_number, default=8000, help="dashboard port (default %(default)s)")
    parser.add_argument(
        "--feed-port", type=port_number, default=DEFAULT_PORT, help="feed server port (default %(default)s)"
    )
    parser.add_argument(
        "--feed-address", type=host_port, help="HOST:PORT of a running feed server (then none is started)"
    )
    parser.add_argument("--seed", type=int, default=1, help="the feed's random seed (default %(default)s)")
    parser.add_argument("--rate", type=float, default=50.0, help="order events/s per instrument (default %(default)s)")
    parser.add_argument("--feed-metrics-port", type=int_in(1, 65535),
                        help="the feed's Prometheus metrics port (default: off; not with --feed-address)")
    parser.add_argument("--replay", metavar="FILE", help="play this recording instead of the simulation")
    parser.add_argument("--speed", default="1", help="with --replay: 1, 10, ... or max (default %(default)s)")
    parser.add_argument("--loop", action="store_true", help="with --replay: start again at its end")
    parser.add_argument("--source", choices=(SIMULATOR, *EXCHANGES), default=SIMULATOR,
                        help="what the feed plays: the simulation (default) or an exchange's public order books")
    parser.add_argument("--symbols", help="with --source: the exchange's symbols, comma-separated")
    parser.add_argument("--source-url", metavar="URL", help="with --source: the exchange's WebSocket endpoint")
    parser.add_argument("--source-rest-url", metavar="URL",
                        help="with --source binance|coinbase: the exchange's REST base")
    parser.add_argument("--source-rest-weight-share", metavar="SHARE",
                        help="with --source binance: the share of the REST weight limit to use (default 0.5)")
    parser.add_argument("--source-renew-after", metavar="SECONDS",
                        help="with --source binance: renew the exchange connection after this long (default 84600)")
    parser.add_argument("--bus", type=nats_url, metavar="URL",
                        help="a running NATS server (nats://HOST:PORT): the feed publishes there and the dashboard "
                             "consumes from it (default: off, the dashboard reads the feed over gRPC)")
    parser.add_argument("--start-timeout", type=float, default=FEED_START_TIMEOUT,
                        help="seconds to wait for the feed to report SERVING (default %(default)s)")
    args = parser.parse_args(argv)
    source_flags = (args.symbols, args.source_url, args.source_rest_url, args.source_rest_weight_share,
                    args.source_renew_after)
    if args.source == SIMULATOR and any(source_flags):
        parser.error("--symbols and the --source-* options apply to --source binance|kraken|coinbase only")
    if args.source != SIMULATOR:
        if not args.symbols:
            parser.error(f"--source {args.source} needs --symbols")
        if args.replay is not None or args.feed_address is not None:
            parser.error(f"--source {args.source} starts its own feed: not with --replay or --feed-address")
    if args.bus is not None and args.feed_address is not None:
        parser.error("--bus starts a feed publishing to NATS: not with --feed-address")
    if args.feed_metrics_port is not None and args.feed_address is not None:
        parser.error("--feed-metrics-port applies to the feed run.py starts, not to one given by --feed-address")
    if args.replay is None and (args.speed != "1" or args.loop):
        parser.error("--speed and --loop apply to --replay only")
    if args.replay is not None:
        if args.feed_address is not None:
            parser.error("--replay starts its own feed: not with --feed-address")
        _check_recording(parser, args.replay)
    if args.bus is not None:
        _check_bus(parser, args.bus, min(args.start_timeout, BUS_CHECK_TIMEOUT))

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    feed: subprocess.Popen[bytes] | None = None
    dashboard: subprocess.Popen[bytes] | None = None
    feed_address = args.feed_address or f"127.0.0.1:{args.feed_port}"
    url = f"http://{_host_for_url(args.host)}:{args.port}/"
    started = time.monotonic()
    try:
        if args.feed_address is None:
            if args.source != SIMULATOR:
                feed_args = ["--port", str(args.feed_port), "--source", args.source, "--symbols", args.symbols]
                for flag, value in (
                    ("--source-url", args.source_url),
                    ("--source-rest-url", args.source_rest_url),
                    ("--source-rest-weight-share", args.source_rest_weight_share),
                    ("--source-renew-after", args.source_renew_after),
                ):
                    feed_args += [flag, value] if value else []
            elif args.replay is None:
                feed_args = ["--port", str(args.feed_port), "--seed", str(args.seed), "--rate", str(args.rate)]
            else:
                feed_args = ["--port", str(args.feed_port), "--replay", args.replay, "--speed", args.speed]
                feed_args += ["--loop"] if args.loop else []
            if args.feed_metrics_port is not None:
                feed_args += ["--metrics-port", str(args.feed_metrics_port)]
            if args.bus is not None:
                feed_args += ["--publish", args.bus]
            feed = _spawn(["-m", "feed_server", *feed_args])
        # The dashboard starts while the feed comes up (its import takes about a second).
        dashboard = _spawn(["-m", "dashboard", "--feed-address", args.bus or feed_address, "--host", args.host,
                            "--port", str(args.port)])
        children = [(name, c) for name, c in (("feed server", feed), ("dashboard", dashboard)) if c is not None]

        def give_up() -> bool:
            return _Stop.requested or _exited(children) is not None

        if (
            wait_ready(f"feed server at {feed_address}", lambda: feed_serving(feed_address), args.start_timeout,
                       give_up=give_up)
            and wait_ready(f"dashboard at {url}", lambda: http_ok(url), DASHBOARD_START_TIMEOUT, give_up=give_up)
        ):
            ws_url = url.replace("http://", "ws://", 1) + "ws/market_data/{instrument_id}"
            print(f"Feed: {feed_address}", flush=True)
            if args.bus is not None:
                print(f"Bus: {args.bus} (the feed publishes there, the dashboard consumes from it)", flush=True)
            if args.feed_metrics_port is not None:
                print(f"Feed metrics: http://127.0.0.1:{args.feed_metrics_port}/metrics", flush=True)
            print(f"Dashboard: {url} (ready in {time.monotonic() - started:.1f} s)", flush=True)
            print(f"WebSocket: {ws_url}", flush=True)
            print("Press Ctrl-C to stop.", flush=True)
        while not give_up():
            time.sleep(0.1)
        dead = _exited(children)
        if dead is not None:  # a child that exits on its own is a failure, even while stopping was requested
            print(_death_line(dead, children), file=sys.stderr, flush=True)
            return 1
        return 0
    except StartupError as exc:
        print(f"run.py: error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        _stop(dashboard)
        _stop(feed)
        if _Stop.requested:
            print("Stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
