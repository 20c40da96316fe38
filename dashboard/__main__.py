"""``python -m dashboard --feed-address HOST:PORT [--host 127.0.0.1] [--port 8000]``: the dashboard alone."""

from __future__ import annotations

import logging

from dashboard.main import DEFAULT_FEED_ADDRESS, DEFAULT_HOST, DEFAULT_PORT, serve
from feed_server.cli_args import OneLineArgumentParser, host_port, port_number


def main(argv: list[str] | None = None) -> None:
    parser = OneLineArgumentParser(prog="python -m dashboard", description=__doc__)
    parser.add_argument(
        "--feed-address", type=host_port, default=DEFAULT_FEED_ADDRESS, help="the feed server, HOST:PORT"
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="the address to serve on (default %(default)s)")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="the web port (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(args.feed_address, args.host, args.port)


if __name__ == "__main__":
    main()
