"""Pacing policies: how long to wait before trying again, and how often to say so. Shared by everything that
retries: the consumers (reconnects, resyncs), the recorder, and the exchange adapters of live sources.

- :class:`Backoff`: exponential backoff with jitter, reset after a success (the reconnect policy).
- :class:`ResyncPacer`: one instrument's resynchronisations: immediate after a quiet spell, backing off while
  faults repeat, so that a broken stream never turns into a storm of snapshot requests.
- :class:`Throttle`: at most one report per key and interval, counting the ones it held back, so that a
  fault repeated on every message makes one log line with a count, not one line per message.

Pure: the clock and the random generator are passed in (tests pass fakes).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable
from typing import NamedTuple

__all__ = ["Backoff", "HeldBack", "ReportOnce", "ResyncPacer", "Throttle"]

Clock = Callable[[], float]


class Backoff:
    """Exponential backoff with jitter: a random start, doubled up to a cap, reset after a success."""

    def __init__(self, initial: float, maximum: float, rng: random.Random) -> None:
        self.initial = initial
        self.maximum = maximum
        self._rng = rng
        self._next = 0.0
        self.attempts = 0  # delays handed out since the last reset

    def reset(self) -> None:
        self._next = 0.0
        self.attempts = 0

    def delay(self) -> float:
        self.attempts += 1
        if self._next == 0.0:
            self._next = self.initial * (0.5 + self._rng.random())
        else:
            self._next = min(self._next * 2, self.maximum)
        return min(self._next * (0.75 + 0.5 * self._rng.random()), self.maximum)


class ResyncPacer:
    """When to request the next snapshot of one instrument.

    The first fault after ``clean_after`` seconds without one is repaired at once; while faults keep coming the
    delay before each new request grows as a :class:`Backoff` (``initial`` doubling up to ``maximum``). A failed
    request is retried after the next delay of the same backoff.
    """

    def __init__(
        self, initial: float, maximum: float, clean_after: float, rng: random.Random, clock: Clock = time.monotonic
    ) -> None:
        self.clean_after = clean_after
        self._backoff = Backoff(initial, maximum, rng)
        self._clock = clock
        self._last_fault: float | None = None

    def on_fault(self) -> float:
        """A fault needs a snapshot: the seconds to wait before requesting it."""
        now = self._clock()
        last, self._last_fault = self._last_fault, now
        if last is None or now - last >= self.clean_after:
            self._backoff.reset()
            return 0.0
        return self._backoff.delay()

    def retry_delay(self) -> float:
        """A snapshot request failed (or its answer was unusable): the seconds to wait before the next one."""
        return self._backoff.delay()


class HeldBack(NamedTuple):
    """A report let through by a :class:`Throttle`: how many were held back before it, over how many seconds."""

    skipped: int
    seconds: float

    def suffix(self, what: str) -> str:
        """``" (and 41 more faults in the last 10 s)"``, or ``""`` when none was held back."""
        if not self.skipped:
            return ""
        return f" (and {self.skipped} more {what} in the last {max(self.seconds, 1.0):.0f} s)"


class Throttle:
    """At most one report per key every ``interval`` seconds; the ones in between are counted, not reported."""

    def __init__(self, interval: float, clock: Clock = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._state: dict[Hashable, tuple[float, int]] = {}  # key -> (time of the last report, held back since)

    def allow(self, key: Hashable) -> HeldBack | None:
        """None: hold this report back (counted). Otherwise report it now, with what was held back before it."""
        now = self._clock()
        state = self._state.get(key)
        if state is not None and now - state[0] < self.interval:
            self._state[key] = (state[0], state[1] + 1)
            return None
        self._state[key] = (now, 0)
        if state is None:
            return HeldBack(0, 0.0)
        return HeldBack(state[1], now - state[0])


class ReportOnce:
    """The problems already reported loudly (at most ``limit`` remembered), so that each is logged once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[Hashable] = set()

    def first(self, key: Hashable) -> bool:
        """Whether ``key`` is reported for the first time (and remember it)."""
        if key in self._seen:
            return False
        if len(self._seen) >= self.limit:
            self._seen.clear()
        self._seen.add(key)
        return True

    def clear(self) -> None:
        self._seen.clear()
