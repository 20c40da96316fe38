"""The JSON API's limits, and reading them from ``DASHBOARD_*`` environment variables, checked at start-up.

=========================== ========= ============================================================
variable                    default   accepted
=========================== ========= ============================================================
DASHBOARD_MAX_CONNECTIONS   2000      an integer from 1 to 1000000: WebSocket clients at once
DASHBOARD_SEND_TIMEOUT      5         a number of seconds, more than 0 and at most 3600
DASHBOARD_TRADE_BUFFER      256       an integer from 1 to 1000000: trade messages kept per instrument
=========================== ========= ============================================================

A variable that is set but not acceptable (``0``, negative, not a number, empty, ``nan``) raises ``BadLimit``,
whose message names the variable and its value; ``python -m dashboard`` prints it as one line and exits 1.
This module imports nothing heavy, so the command line checks the environment before it loads the app.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from feed_server.protocol.errors import quoted

__all__ = ["ENV_LIMITS", "ApiLimits", "BadLimit"]

_INT = re.compile(r"[+-]?[0-9]{1,12}")
MAX_COUNT = 1_000_000
MAX_SEND_TIMEOUT = 3600.0


class BadLimit(ValueError):
    """A ``DASHBOARD_*`` variable holds a value that is not acceptable; the message names both."""


@dataclass(frozen=True, slots=True)
class ApiLimits:
    max_connections: int = 2000  # WebSocket clients at once; more get too_many_connections and 1013
    send_timeout: float = 5.0  # seconds one send may block before the client is dropped (slow_consumer)
    trade_buffer: int = 256  # trade messages buffered per client; the oldest are dropped past it
    instrument_wait: float = 5.0  # seconds to wait for the feed's instrument list before judging an id
    socket_send_buffer: int = 128 * 1024  # the kernel's send buffer per connection (SO_SNDBUF), bytes

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiLimits:
        """Limits from DASHBOARD_MAX_CONNECTIONS, DASHBOARD_SEND_TIMEOUT, DASHBOARD_TRADE_BUFFER (defaults above).

        Raises BadLimit for a variable that is set to an unacceptable value.
        """
        default = cls()
        return cls(
            max_connections=_count(env, "DASHBOARD_MAX_CONNECTIONS", default.max_connections),
            send_timeout=_seconds(env, "DASHBOARD_SEND_TIMEOUT", default.send_timeout, MAX_SEND_TIMEOUT),
            trade_buffer=_count(env, "DASHBOARD_TRADE_BUFFER", default.trade_buffer),
        )


ENV_LIMITS = ("DASHBOARD_MAX_CONNECTIONS", "DASHBOARD_SEND_TIMEOUT", "DASHBOARD_TRADE_BUFFER")


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    text = raw.strip()
    if not _INT.fullmatch(text) or not 1 <= int(text) <= MAX_COUNT:
        raise BadLimit(f"{name} must be an integer from 1 to {MAX_COUNT}, got {quoted(raw)}")
    return int(text)


def _seconds(env: Mapping[str, str], name: str, default: float, high: float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw) if len(raw) <= 40 else math.nan
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= high):
        raise BadLimit(f"{name} must be a number of seconds above 0 and at most {high:g}, got {quoted(raw)}")
    return value
