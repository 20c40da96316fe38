"""The NATS connection the feed and its consumers share: how it is opened, how its state is reported, and the
gathering of several answers to one request.

:func:`connect` opens a connection that reconnects by itself, forever, once it has been made (nats-py's own
reconnect, every ``RECONNECT_WAIT_S``): each loss and each return is logged once, and counted in
:class:`BusLink`. The first connection must succeed within ``timeout`` seconds, else :class:`BusUnavailable`
(one line naming the URL): a process that was told to use NATS and cannot reach it says so at start-up; a refused
connection says so within a second, without waiting out ``timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from feed_server.protocol.errors import MarketDataError

__all__ = ["RECONNECT_WAIT_S", "BusLink", "BusUnavailable", "connect", "gather"]

logger = logging.getLogger(__name__)

RECONNECT_WAIT_S = 0.5  # between two reconnection attempts
STATUS_HEADER = "Status"  # set by the NATS server on its own replies (503: no responders), never by a feed
_ERROR_LOG_INTERVAL_S = 10.0  # the client's own errors (each failed attempt raises one) are logged at most this often


class BusUnavailable(MarketDataError):
    """The NATS server could not be reached at start-up."""


@dataclass
class BusLink:
    """A NATS connection and what happened to it: ``connected`` now, ``reconnects`` and ``disconnects`` so far."""

    url: str
    client: Client = field(default_factory=Client)
    connected: bool = False
    disconnects: int = 0
    reconnects: int = 0
    last_error: Exception | None = None
    closing: bool = False  # set by close() and drain(): the end of the connection is no loss to report
    _last_error_log: float = 0.0

    async def _on_disconnect(self) -> None:
        if self.connected and not self.closing:
            self.connected = False
            self.disconnects += 1
            logger.warning("lost the NATS server at %s; reconnecting every %g s", self.url, RECONNECT_WAIT_S)

    async def _on_reconnect(self) -> None:
        self.connected = True
        self.reconnects += 1
        logger.info("reconnected to the NATS server at %s", self.url)

    async def _on_error(self, error: Exception) -> None:
        self.last_error = error
        if not self.connected and not self.disconnects:
            return  # the first connection: connect() reports its failure in one line
        now = time.monotonic()
        if now - self._last_error_log >= _ERROR_LOG_INTERVAL_S:
            self._last_error_log = now
            logger.info("NATS at %s: %s: %s", self.url, type(error).__name__, error)

    async def close(self) -> None:
        self.closing = True
        if not self.client.is_closed:
            await self.client.close()
        self.connected = False

    async def drain(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109 (a bound on the flush)
        """Flush what was handed to NATS (bounded), then close."""
        self.closing = True
        try:
            async with asyncio.timeout(timeout):
                await self.client.drain()
        except (TimeoutError, nats.errors.Error, OSError):
            await self.close()
        self.connected = False


async def connect(url: str, name: str, timeout: float = 5.0) -> BusLink:  # noqa: ASYNC109 (the start-up deadline)
    """A connection to the NATS server at ``url`` (see the module docstring); BusUnavailable after ``timeout``."""
    link = BusLink(url)
    try:
        async with asyncio.timeout(timeout):
            await link.client.connect(
                servers=[url],
                name=name,
                connect_timeout=max(1, min(int(timeout), 2)),
                allow_reconnect=True,
                max_reconnect_attempts=1,  # the first connection: two tries (0.5 s apart); forever once made
                reconnect_time_wait=RECONNECT_WAIT_S,  # type: ignore[arg-type]  # (seconds; the hint says int)
                disconnected_cb=link._on_disconnect,
                reconnected_cb=link._on_reconnect,
                error_cb=link._on_error,
            )
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        await _abandon(link.client)
        # A timeout or "no servers" says less than the attempt's own error (a refused connection, a bad greeting).
        error = link.last_error if link.last_error is not None else exc
        if isinstance(error, TimeoutError):
            reason = f"no answer within {timeout:g} s"
        else:
            reason = f"{type(error).__name__}: {error}"
        raise BusUnavailable(f"cannot connect to the NATS server at {url} ({reason})") from None
    link.client.options["max_reconnect_attempts"] = -1  # read at each reconnection: from now on, never give up
    link.connected = True
    return link


async def _abandon(client: Client) -> None:
    """Close a client whose first connection failed (it may still be retrying)."""
    try:
        async with asyncio.timeout(1.0):
            await client.close()
    except Exception:
        logger.debug("closing an unconnected NATS client failed", exc_info=True)


async def gather(client: Client, subject: str, payload: bytes, window: float) -> list[Msg]:
    """Every answer to one request that arrives within ``window`` seconds (a request answered by several feeds).

    The NATS server's own status replies (``Status: 503``, no responders) are no answer and are left out."""
    inbox = client.new_inbox()
    answers: list[Msg] = []
    subscription = await client.subscribe(inbox)
    try:
        await client.publish(subject, payload, reply=inbox)
        await client.flush()
        deadline = asyncio.get_running_loop().time() + window
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                answer = await subscription.next_msg(timeout=left)
            except nats.errors.TimeoutError:
                break
            if not (answer.headers or {}).get(STATUS_HEADER):
                answers.append(answer)
    finally:
        await subscription.unsubscribe()
    return answers
