"""The reconnect policy: exponential backoff with jitter, reset after a connection succeeds."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


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
