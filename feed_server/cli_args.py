"""Command-line helpers shared by every entry point (the feed server, the CLI client, the dashboard, run.py).

Bad arguments are one line on stderr and exit code 1, like every other error of these commands.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn

__all__ = ["OneLineArgumentParser", "feed_address", "float_in", "host_port", "int_in", "nats_url", "port_number"]


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


def nats_url(text: str) -> str:
    """An argparse type: ``nats://HOST:PORT``."""
    host, sep, port = text.removeprefix("nats://").rpartition(":")
    if not text.startswith("nats://") or not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected nats://HOST:PORT, got {text!r}")
    return text


def feed_address(text: str) -> str:
    """An argparse type: a feed's address, ``HOST:PORT`` (gRPC) or ``nats://HOST:PORT`` (the feed on NATS)."""
    if text.startswith("nats://"):
        return nats_url(text)
    try:
        return host_port(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT or nats://HOST:PORT, got {text!r}") from None


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high`` (no upper bound when None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text!r}")
        return value

    return parse


def float_in(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number from ``low`` (excluded if ``low_open``) to ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
            bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
            raise argparse.ArgumentTypeError(f"must be within {bounds}, got {text!r}")
        return value

    return parse
