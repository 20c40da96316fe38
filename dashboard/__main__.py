"""``python -m dashboard --feed-address HOST:PORT [--host 127.0.0.1] [--port 8000]``: the dashboard alone.

Before it loads the app it checks what would otherwise fail later or be ignored: the ``DASHBOARD_*`` limits (see
dashboard/api/limits.py) and that it can listen on ``--host``/``--port``. Either failure is one line on stderr,
``python -m dashboard: error: <what>``, and exit code 1.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

from dashboard.api.limits import ApiLimits, BadLimit
from dashboard.main import DEFAULT_FEED_ADDRESS, DEFAULT_HOST, DEFAULT_PORT, serve
from feed_server.cli_args import OneLineArgumentParser, feed_address, port_number

PROG = "python -m dashboard"


class CannotListen(OSError):
    """The address to serve on cannot be bound (the port is taken, or the host is not this machine's)."""


def check_listen_address(host: str, port: int) -> None:
    """Bind (and release) every address ``host`` resolves to on ``port`` as the server will (SO_REUSEADDR).

    Raises CannotListen naming the address. The check and the server's own bind are two steps: a process that
    takes the port in between still makes the server fail, as uvicorn reports it.
    """
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in infos:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
    except OSError as exc:
        raise CannotListen(f"cannot listen on {shown}: {exc.strerror or exc}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument(
        "--feed-address",
        type=feed_address,
        default=DEFAULT_FEED_ADDRESS,
        help="the feed server, HOST:PORT, or nats://HOST:PORT for the feeds publishing on NATS",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="the address to serve on (default %(default)s)")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="the web port (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        limits = ApiLimits.from_env(os.environ)
        check_listen_address(args.host, args.port)
    except (BadLimit, CannotListen) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(args.feed_address, args.host, args.port, limits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
