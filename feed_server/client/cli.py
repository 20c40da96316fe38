"""The command-line client: ``python -m feed_server.client --address HOST:PORT --instrument ID``.

Subscribes to one instrument with the shared subscriber (every message's sequence and checksum verified),
and prints a live top-of-book table: redrawn in place on a terminal, one summary line per message when
piped. ``--list`` prints the instruments. Errors are one line on stderr and exit code 1: bad arguments, and
whatever stops the first connection (no feed, an unknown instrument), so that a typo never hangs. Once the
book has been live the client never gives up: a later failure shows the book as STALE (a STALE line when
piped, a STALE header with the reason on a terminal) and it reconnects by itself until Ctrl-C, ``--count`` or
``--duration`` end it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from feed_server.cli_args import OneLineArgumentParser, feed_address, float_in, int_in
from feed_server.client.addresses import list_instruments, make_subscriber
from feed_server.client.book_text import format_instrument, render_table, summary_line
from feed_server.client.sync import InstrumentBook
from feed_server.defaults import DEFAULT_FEED_ADDRESS, DEFAULT_VIEW_DEPTH
from feed_server.protocol.book import MAX_DEPTH, Trade
from feed_server.protocol.core import log_core
from feed_server.protocol.errors import MarketDataError

__all__ = ["main"]

REDRAW_INTERVAL = 0.05  # at most 20 redraws a second on a terminal

_HOME = "\x1b[H"
_CLEAR_LINE = "\x1b[K"
_CLEAR_BELOW = "\x1b[J"
_CLEAR_SCREEN = "\x1b[2J"
_HIDE_CURSOR = "\x1b[?25l"
_SHOW_CURSOR = "\x1b[?25h"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m feed_server.client",
        description="Subscribe to one instrument of a market data feed and print its live top of book.",
    )
    parser.add_argument(
        "--address",
        type=feed_address,
        default=DEFAULT_FEED_ADDRESS,
        help=f"feed server HOST:PORT, or nats://HOST:PORT for the feeds on NATS (default {DEFAULT_FEED_ADDRESS})",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--instrument", metavar="ID", help="the instrument to subscribe to")
    what.add_argument("--list", action="store_true", help="print the instruments, one a line, and exit")
    parser.add_argument(
        "--depth",
        type=int_in(1, MAX_DEPTH),
        default=DEFAULT_VIEW_DEPTH,
        help=f"levels per side, 1..{MAX_DEPTH} (default {DEFAULT_VIEW_DEPTH})",
    )
    until = parser.add_mutually_exclusive_group()
    until.add_argument("--count", type=int_in(1), metavar="N", help="exit after N messages")
    until.add_argument("--duration", type=float_in(0.0, 1e9, low_open=True), metavar="S", help="exit after S seconds")
    parser.add_argument("--verbose", "-v", action="store_true", help="log the subscriber's info messages")
    return parser


class _Printer:
    """Prints the book after each listener call: a redrawn table on a terminal, summary lines otherwise."""

    def __init__(self, out: TextIO, rows: int, tty: bool) -> None:
        self.out = out
        self.rows = rows
        self.tty = tty
        self._last_draw = 0.0
        self._pending = False
        self._drawn = False
        self._drawn_status: tuple[bool, str | None] = (False, None)

    def message(self, entry: InstrumentBook, now: float) -> None:
        if not self.tty:
            self.out.write(summary_line(entry) + "\n")
            self.out.flush()
            return
        if now - self._last_draw >= REDRAW_INTERVAL or (entry.stale, entry.stale_reason) != self._drawn_status:
            self.draw(entry, now)  # (a change of status is shown at once: no later message may come to show it)
        else:
            self._pending = True

    def draw(self, entry: InstrumentBook, now: float) -> None:
        prefix = _HIDE_CURSOR + _CLEAR_SCREEN if not self._drawn else ""
        lines = render_table(entry, self.rows)
        self.out.write(prefix + _HOME + "".join(line + _CLEAR_LINE + "\n" for line in lines) + _CLEAR_BELOW)
        self.out.flush()
        self._drawn = True
        self._drawn_status = (entry.stale, entry.stale_reason)
        self._pending = False
        self._last_draw = now

    def finish(self, entry: InstrumentBook | None, now: float) -> None:
        if self.tty and self._drawn:
            if self._pending and entry is not None:
                self.draw(entry, now)
            self.out.write(_SHOW_CURSOR)
            self.out.flush()


async def _stream(args: argparse.Namespace, out: TextIO) -> int:
    # No reconnection until the book has been live once: a failing first connection is the user's error to see.
    subscriber = make_subscriber(args.address, [args.instrument], depth=args.depth, reconnect=False)
    printer = _Printer(out, args.depth, out.isatty())
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    counted = 0

    def on_book(instrument_id: str, trades: Sequence[Trade]) -> None:
        nonlocal counted
        entry = subscriber.books[instrument_id]
        if not entry.stale:
            subscriber.reconnect = True  # live once: from now on it never gives up
        if entry.messages_applied == counted and not entry.stale:
            return  # nothing new to show
        if args.count is not None and counted >= args.count:
            return
        counted = entry.messages_applied
        try:
            printer.message(entry, loop.time())
        except BrokenPipeError:  # the reader went away (| head): stop quietly
            done.set()
            return
        if args.count is not None and counted >= args.count:
            done.set()

    subscriber.add_listener(on_book)
    run = asyncio.create_task(subscriber.run(), name="feed-subscriber")
    finished = asyncio.create_task(done.wait(), name="client-count")
    try:
        await asyncio.wait({run, finished}, timeout=args.duration, return_when=asyncio.FIRST_COMPLETED)
        if run.done():
            run.result()  # raises the error that stopped the first connection
            return 1  # the subscriber ended without an error: not expected
        return 0
    finally:
        subscriber.remove_listener(on_book)
        printer.finish(subscriber.books.get(args.instrument), loop.time())
        finished.cancel()
        run.cancel()
        await asyncio.gather(run, finished, return_exceptions=True)


async def _list(args: argparse.Namespace, out: TextIO) -> int:
    for spec in await list_instruments(args.address):
        out.write(format_instrument(spec) + "\n")
    out.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    log_core()
    try:
        code = asyncio.run(_list(args, sys.stdout) if args.list else _stream(args, sys.stdout))
    except MarketDataError as exc:
        sys.stderr.write(f"error: {type(exc).__name__}: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        code = 0
    _silence_stdout()  # the reader may be gone: no "Exception ignored" message when Python flushes at exit
    return code


def _silence_stdout() -> None:
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
