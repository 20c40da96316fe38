"""A REST request-weight budget (Binance's IP limits): pure, no I/O; the clock is passed in.

Binance counts a weight per REST request against the caller's IP (``/api/v3/depth?limit=1000`` weighs 50,
``/api/v3/exchangeInfo`` 20) over the windows that exchangeInfo's ``rateLimits`` announce (``REQUEST_WEIGHT``,
today 6,000 per minute), reports what the IP has used in each window in ``X-MBX-USED-WEIGHT-<n><s|m|h|d>``
headers, answers 429 when a limit is broken and bans the IP (418) when that goes on; both carry ``Retry-After``.

:class:`WeightBudget` keeps the adapter well inside: a request may go only when, in every window, neither the
weight this process sent in the last window nor what the exchange last reported for the current window (plus
what was sent since) would pass ``share`` of the limit; a 429 or 418 holds every request until its
``Retry-After`` has passed. :meth:`WeightBudget.delay` says how long to wait; :meth:`WeightBudget.spend` records
a request that goes.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_LIMITS",
    "DEPTH_1000_WEIGHT",
    "EXCHANGE_INFO_WEIGHT",
    "RateLimit",
    "WeightBudget",
    "parse_rate_limits",
]

DEPTH_1000_WEIGHT = 50  # GET /api/v3/depth with limit 501..1000
EXCHANGE_INFO_WEIGHT = 20  # GET /api/v3/exchangeInfo
DEFAULT_BAN_S = 120.0  # a 418 without Retry-After: Binance's shortest ban
DEFAULT_RETRY_S = 60.0  # a 429 without Retry-After: the rest of a minute window at most

_UNIT_S = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
_LETTER_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_HEADER = re.compile(r"^x-mbx-used-weight-(\d+)([smhd])$")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One ``REQUEST_WEIGHT`` limit: at most ``limit`` weight per ``seconds`` (a fixed window on the clock)."""

    seconds: int
    limit: int


DEFAULT_LIMITS = (RateLimit(60, 6000),)  # what Binance announces today, used until exchangeInfo says otherwise


def parse_rate_limits(raw: Any) -> list[RateLimit]:
    """exchangeInfo's ``rateLimits`` as the REQUEST_WEIGHT limits it holds (others and malformed entries skipped)."""
    limits: list[RateLimit] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict) or item.get("rateLimitType") != "REQUEST_WEIGHT":
            continue
        unit, count, limit = _UNIT_S.get(str(item.get("interval"))), item.get("intervalNum"), item.get("limit")
        if unit is None or not isinstance(count, int) or not isinstance(limit, int) or count <= 0 or limit <= 0:
            continue
        limits.append(RateLimit(unit * count, limit))
    return limits


@dataclass
class _Window:
    seconds: int
    budget: int
    sent: deque[tuple[float, int]] = field(default_factory=deque)  # (time, weight) of this process's requests
    reported: tuple[float, int] | None = None  # (time, used) the exchange last reported for its current window
    since_report: int = 0  # weight sent since that report

    @property
    def span(self) -> float:
        """How long a request counts: the window, plus a slack for the time it takes to reach the exchange (a
        request sent late in one window may be counted early in the next)."""
        return self.seconds + min(1.0, 0.1 * self.seconds)

    def own(self, now: float) -> int:
        while self.sent and self.sent[0][0] <= now - self.span:
            self.sent.popleft()
        return sum(weight for _, weight in self.sent)

    def exchange(self, now: float) -> int:
        if self.reported is None or math.floor(self.reported[0] / self.seconds) != math.floor(now / self.seconds):
            return 0  # the exchange's window has turned since its report
        return self.reported[1] + self.since_report

    def wait(self, now: float, weight: int) -> float:
        """Seconds until ``weight`` more fits this window (0: now)."""
        need = min(weight, self.budget)  # a request heavier than the whole budget goes into an empty window
        waits = [0.0]
        own = self.own(now)
        if own + need > self.budget:
            for sent_at, sent in self.sent:
                own -= sent
                if own + need <= self.budget:
                    waits.append(sent_at + self.span - now)
                    break
        if self.exchange(now) + need > self.budget:
            waits.append((math.floor(now / self.seconds) + 1) * self.seconds - now)
        return max(waits)


class WeightBudget:
    """This process's share of an exchange's REST weight limits (see the module docstring)."""

    def __init__(
        self,
        share: float = 0.5,
        limits: Iterable[RateLimit] = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"a weight share must be in (0, 1], not {share}")
        self.share = share
        self._clock = clock
        self._windows: list[_Window] = []
        self._held_until = 0.0
        self.held_reason = ""
        self.set_limits(limits)

    @property
    def budgets(self) -> dict[int, int]:
        """Window seconds -> the weight this process may use in it."""
        return {window.seconds: window.budget for window in self._windows}

    def set_limits(self, limits: Iterable[RateLimit]) -> None:
        """The limits exchangeInfo announced (none: keep the ones in force); what was sent is kept."""
        old = {window.seconds: window for window in self._windows}
        windows = [
            _Window(limit.seconds, max(1, math.floor(limit.limit * self.share)))
            for limit in {limit.seconds: limit for limit in limits}.values()
        ]
        if not windows:
            return
        for window in windows:
            kept = old.get(window.seconds)
            if kept is not None:
                window.sent, window.reported, window.since_report = kept.sent, kept.reported, kept.since_report
            elif self._windows:
                window.sent = deque(self._windows[0].sent)  # a new window starts from what was sent
        self._windows = windows

    def delay(self, weight: int) -> float:
        """Seconds to wait before a request of ``weight`` may go (0: it may go now)."""
        now = self._clock()
        held = self._held_until - now
        return max([held, *(window.wait(now, weight) for window in self._windows)])

    def spend(self, weight: int) -> None:
        """A request of ``weight`` goes now."""
        now = self._clock()
        for window in self._windows:
            window.sent.append((now, weight))
            window.since_report += weight

    def used(self, seconds: int) -> int:
        """The weight counted against the ``seconds`` window now: the larger of ours and the exchange's report."""
        now = self._clock()
        window = next(w for w in self._windows if w.seconds == seconds)
        return max(window.own(now), window.exchange(now))

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """An answer: its ``X-MBX-USED-WEIGHT-*`` headers, and a hold after 429 or 418 (until ``Retry-After``)."""
        now = self._clock()
        for name, value in headers.items():
            match = _HEADER.match(name.lower())
            if match is None:
                continue
            seconds = int(match.group(1)) * _LETTER_S[match.group(2)]
            try:
                used = int(value)
            except ValueError:
                continue
            for window in self._windows:
                if window.seconds == seconds:
                    window.reported, window.since_report = (now, used), 0
        if status in (418, 429):
            retry = _retry_after(headers.get("Retry-After") or headers.get("retry-after"))
            wait = retry if retry is not None else DEFAULT_BAN_S if status == 418 else DEFAULT_RETRY_S
            if now + wait > self._held_until:
                self._held_until = now + wait
                what = "banned the address (HTTP 418)" if status == 418 else "answered HTTP 429 (too many requests)"
                self.held_reason = f"the exchange {what}; every REST request held for {wait:.0f} s"

    def holding(self) -> bool:
        """Whether a 429 or 418 holds every request now."""
        return self._clock() < self._held_until


def _retry_after(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None
