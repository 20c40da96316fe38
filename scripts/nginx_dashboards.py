"""``python -m scripts.nginx_dashboards --listen PORT --dashboards P1,P2[,...] --prefix DIR``: nginx for N dashboards.

Writes ``DIR/nginx.conf`` from ``scripts/nginx/dashboards.conf`` (the listen port, one upstream server line per
dashboard on 127.0.0.1) and makes ``DIR/temp/``; then ``nginx -p DIR -c DIR/nginx.conf`` serves every dashboard
behind one address (see the template's comments, and the README's "Many dashboards behind one address").
"""

from __future__ import annotations

import argparse
from pathlib import Path

from feed_server.cli_args import OneLineArgumentParser, port_number

__all__ = ["TEMPLATE", "render", "write_config"]

TEMPLATE = Path(__file__).resolve().parent / "nginx" / "dashboards.conf"


def render(listen: int, dashboards: list[int]) -> str:
    """The template with ``listen`` and one ``server 127.0.0.1:P;`` line per dashboard port in each upstream."""
    if not dashboards:
        raise ValueError("at least one dashboard port")
    servers = "\n        ".join(f"server 127.0.0.1:{port};" for port in dashboards)
    return TEMPLATE.read_text().replace("LISTEN_PORT", str(listen)).replace("# DASHBOARDS", servers)


def write_config(prefix: Path, listen: int, dashboards: list[int]) -> Path:
    """Write ``prefix/nginx.conf`` and make the directories it uses; its path."""
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "temp" / name).mkdir(parents=True, exist_ok=True)
    path = prefix / "nginx.conf"
    path.write_text(render(listen, dashboards))
    return path


def _ports(text: str) -> list[int]:
    ports = [port_number(part) for part in text.split(",") if part.strip()]
    if not ports:
        raise argparse.ArgumentTypeError("no dashboard port given")
    return ports


def main() -> int:
    parser = OneLineArgumentParser(prog="python -m scripts.nginx_dashboards", description=__doc__)
    parser.add_argument("--listen", type=port_number, required=True, help="the port nginx listens on (127.0.0.1)")
    parser.add_argument("--dashboards", type=_ports, required=True, help="the dashboards' ports, comma-separated")
    parser.add_argument("--prefix", type=Path, required=True, help="nginx's directory (its config, pid, temp files)")
    args = parser.parse_args()
    path = write_config(args.prefix, args.listen, args.dashboards)
    print(f"nginx -p {args.prefix} -c {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
