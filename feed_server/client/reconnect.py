"""One subscriber's never-give-up connection loop: connect, and after each failure wait and connect again.

:class:`Reconnects` runs the subscriber's connections one after another (``connect``: one connection through
the transport, which returns or raises when it ends) until cancelled. Any failure of a connection (a FeedError
of any kind, the end of the stream, an unexpected exception while handling the stream) is described
(feed_server.client.failures) and handed to the subscriber (``lost``: it marks every book stale and says why),
then the loop waits: exponential backoff with jitter (feed_server.pacing.Backoff), started afresh once a
connection stayed live STABLE_AFTER seconds; a code that retrying cannot heal soon
(feed_server.protocol.errors.Code.permanent) is retried every ``backoff.maximum`` seconds. Each distinct problem
is logged once (a bug at ERROR with its traceback), its repeats at INFO. When ``reconnect()`` says no, the first
failure is raised instead (the CLI's first connection).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn

from feed_server.client.failures import Failure, describe_failure
from feed_server.client.stats import SubscriberStats
from feed_server.pacing import Backoff, ReportOnce
from feed_server.protocol.errors import FeedError, FeedUnavailable

__all__ = ["MAX_REPORTED", "STABLE_AFTER", "Reconnects"]

log = logging.getLogger("feed_server.client.subscriber")  # the subscriber's log lines, as users grep them

STABLE_AFTER = 1.0  # a stream live this long was a successful connection: the backoff and the reports start afresh
MAX_REPORTED = 100  # distinct problems remembered (logged once each) until a connection succeeds


class Reconnects:
    """The connections of one subscriber to ``address``, paced by ``backoff`` (see the module docstring)."""

    def __init__(self, address: str, stats: SubscriberStats, backoff: Backoff) -> None:
        self.address = address
        self._stats = stats
        self._backoff = backoff
        self._reported = ReportOnce(MAX_REPORTED)  # the problems logged at WARNING/ERROR since the last success
        self._live_since: float | None = None  # when the current stream's first response arrived

    def first_report(self, key: tuple[str, str]) -> bool:
        """Whether the problem ``key`` is not yet reported loudly since the last successful connection (from now
        on it is): the subscriber's other reports of problems share this memory."""
        return self._reported.first(key)

    def streaming(self) -> None:
        """The current connection streams (from now on, STABLE_AFTER seconds make it a successful one)."""
        self._live_since = asyncio.get_running_loop().time()

    async def run(
        self,
        connect: Callable[[], Awaitable[None]],
        lost: Callable[[Exception, Failure], None],
        reconnect: Callable[[], bool],
    ) -> NoReturn:
        """Connect again and again until cancelled; with ``reconnect()`` false, raise the first failure (an
        unexpected exception as it is, before ``lost``)."""
        attempt = 0
        while True:
            if attempt:
                self._stats.reconnects += 1
            attempt += 1
            error: Exception
            try:
                await connect()
                error = FeedUnavailable(f"stream from {self.address} ended")
            except FeedError as exc:
                error = exc
            except Exception as exc:  # a bug or the unforeseen inside the stream handling: retried (logged once)
                if not reconnect():
                    raise
                self._stats.unexpected_errors += 1
                error = exc
            delay = self._failed(error, lost, reconnect)
            if not reconnect():
                raise error
            await asyncio.sleep(delay)

    def _failed(
        self, error: Exception, lost: Callable[[Exception, Failure], None], reconnect: Callable[[], bool]
    ) -> float:
        """A connection ended with ``error``: hand it to ``lost`` with its words, log it once per distinct problem,
        and return the delay before the next attempt."""
        loop = asyncio.get_running_loop()
        if self._live_since is not None and loop.time() - self._live_since >= STABLE_AFTER:
            self._backoff.reset()  # the connection had succeeded: this is a new outage
            self._reported.clear()
        self._live_since = None
        failure = describe_failure(error, self.address, self._backoff.maximum)
        # The same request would be refused again for a while: retried at the slowest pace.
        delay = self._backoff.maximum if failure.permanent else self._backoff.delay()
        lost(error, failure)
        if not reconnect():
            return 0.0  # raised by run(): its caller reports it
        text = failure.text
        if not self._reported.first((type(error).__name__, str(error))):
            log.info("%s; reconnecting in %.2f s", text, delay)
        elif not isinstance(error, FeedError):
            log.error("%s; the books are stale, reconnecting in %.2f s", text, delay, exc_info=error)
        elif failure.permanent:
            log.warning("%s; the books are stale, retrying every %g s", text, delay)
        else:
            log.warning("%s; reconnecting in %.2f s", text, delay)
        return delay
