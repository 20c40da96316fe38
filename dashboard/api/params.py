"""Query parameters of the JSON API: strict parsing, and one error message per bad value.

``depth`` (1..100, default feed_server.defaults.DEFAULT_VIEW_DEPTH), ``interval_ms`` (0..``MAX_INTERVAL_MS``)
and ``trades`` (1/0, true/false, yes/no); other parameters are ignored. A bad value raises ``BadParameter``,
whose message names the parameter and the value it got; the routes answer it with ``bad_request``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from feed_server.protocol.errors import quoted

__all__ = ["MAX_INTERVAL_MS", "BadParameter", "bool_param", "int_param"]

MAX_INTERVAL_MS = 60_000  # the longest interval_ms between two flushes
_INT = re.compile(r"[+-]?[0-9]{1,12}")
_BOOLS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


class BadParameter(ValueError):
    """A query parameter is not acceptable; the message names it and its value."""


def int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """The integer ``params[name]`` in ``low..high``, or ``default`` when it is absent."""
    raw = params.get(name)
    if raw is None:
        return default
    if not _INT.fullmatch(raw) or not low <= int(raw) <= high:
        raise BadParameter(f"{name} must be an integer from {low} to {high}, got {quoted(raw)}")
    return int(raw)


def bool_param(params: Mapping[str, str], name: str, default: bool) -> bool:
    """``params[name]`` as 1/0, true/false or yes/no (any case), or ``default`` when it is absent."""
    raw = params.get(name)
    if raw is None:
        return default
    value = _BOOLS.get(raw.lower())
    if value is None:
        raise BadParameter(f"{name} must be 1 or 0 (true or false), got {quoted(raw)}")
    return value
