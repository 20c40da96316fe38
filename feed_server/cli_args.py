"""Command-line helpers shared by every entry point (the feed server, the CLI client, the dashboard, run.py).

Bad arguments are one line on stderr and exit code 1, like every other error of these commands.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

__all__ = ["OneLineArgumentParser", "host_port", "port_number"]


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are ``<prog>: error: <message> (see --help)`` and exit code 1."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: error: {message} (see --help)\n")


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0..65535."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0..65535): {text!r}")
    return int(text)


def host_port(text: str) -> str:
    """An argparse type: ``HOST:PORT`` (IPv6 hosts in brackets), returned as given."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return text
