"""The dashboard's one link to the feed: a subscriber task (gRPC or NATS) that keeps every book rebuilt.

Page and WebSocket code never touch gRPC: they read the books through the bridge. The bridge owns exactly
one task (the subscriber's ``run()``), started with the app and cancelled on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence

from dashboard.owned_task import OwnedTask
from feed_server.client.addresses import make_subscriber
from feed_server.client.keeper import ConnectionState
from feed_server.client.sync import InstrumentBook
from feed_server.protocol.book import MAX_DEPTH, Trade
from feed_server.protocol.core import log_core
from feed_server.protocol.instruments import InstrumentSpec

__all__ = ["FeedBridge"]

log = logging.getLogger(__name__)

TASK_NAME = "dashboard feed subscriber"
RESTART_DELAY = 5.0  # seconds before the subscriber is run again, should it ever end (it retries on its own)
NOT_LIVE_YET = "waiting for the feed"  # the reason of a book that is not live when the subscriber gives none
_RATE_WINDOW = 2.0  # seconds over which update_rate() is measured
_SAMPLE_EVERY = 0.25  # seconds between two rate samples of one instrument


class FeedBridge:
    """Subscribes to every instrument of the feed at full depth (MAX_DEPTH) and exposes the books."""

    def __init__(
        self,
        feed_address: str,
        *,
        heartbeat_timeout: float = 2.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
    ) -> None:
        self.feed_address = feed_address
        self.subscriber = make_subscriber(
            feed_address,
            (),
            MAX_DEPTH,
            reconnect=True,
            heartbeat_timeout=heartbeat_timeout,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
        )
        self._task = OwnedTask(self._run, TASK_NAME)
        # Per instrument: (monotonic time, messages_applied) samples, oldest first.
        self._samples: dict[str, deque[tuple[float, int]]] = {}
        self.subscriber.add_listener(self._on_book)

    # ----------------------------------------------------------------- reading
    def instruments(self) -> list[InstrumentSpec]:
        """The feed's instruments in the feed's order; [] until the feed has answered."""
        return list(self.subscriber.instruments.values())

    def book(self, instrument_id: str) -> InstrumentBook | None:
        return self.subscriber.books.get(instrument_id)

    def listed(self) -> Mapping[str, InstrumentSpec]:
        """The feed's instrument list as last fetched (replaced, never changed in place, on each connection);
        empty until the feed has answered. Read only."""
        return self.subscriber.instruments

    def is_gone(self, instrument_id: str) -> bool:
        """Whether the feed has listed its instruments and ``instrument_id`` is not among them (a restarted feed
        dropped it)."""
        listed = self.subscriber.instruments
        return bool(listed) and instrument_id not in listed

    def source(self) -> str:
        """What the feed plays, as it last said (``"replay of s.mdrec at 10x"``); "" until it has answered."""
        return self.subscriber.source

    def connection_state(self) -> ConnectionState:
        return self.subscriber.state

    def problem(self) -> str | None:
        """Why the feed connection is not streaming (one line), or None while it is."""
        return self.subscriber.problem

    def reason(self, ibook: InstrumentBook) -> str | None:
        """Why this book is not live (one line), or None while it is (not stale, and it has had a snapshot).

        The subscriber's problem comes first (the feed unreachable, or an error that retrying cannot heal), then
        the book's own stale reason."""
        if not ibook.stale and ibook.book.sequence is not None:
            return None
        return self.subscriber.problem or ibook.stale_reason or NOT_LIVE_YET

    def update_rate(self, instrument_id: str) -> float:
        """Applied messages per second for one instrument over the last ~2 s (0.0 when quiet or unknown)."""
        ibook = self.subscriber.books.get(instrument_id)
        samples = self._samples.get(instrument_id)
        if ibook is None or not samples:
            return 0.0
        now = time.monotonic()
        for t, count in samples:  # the oldest sample inside the window
            age = now - t
            if age > _RATE_WINDOW + _SAMPLE_EVERY:
                continue
            applied = ibook.messages_applied - count
            if age < 0.05 or applied < 0:  # too short to tell, or the book was replaced (feed restart)
                return 0.0
            return applied / age
        return 0.0  # nothing applied for longer than the window

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the one subscriber task (idempotent)."""
        self._task.start()

    async def stop(self) -> None:
        """Cancel the subscriber task and wait for it to end (bounded)."""
        await self._task.stop()

    async def _run(self) -> None:
        """Run the subscriber until cancelled. It retries every failure itself; should it still end (a bug), it is
        logged with its traceback and started again, so the dashboard never stays stale for good."""
        log_core()
        log.info("subscribing to the feed at %s", self.feed_address)
        while True:
            try:
                await self.subscriber.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the feed subscriber stopped; starting it again in %g s", RESTART_DELAY)
            else:
                log.error("the feed subscriber returned; starting it again in %g s", RESTART_DELAY)
            await asyncio.sleep(RESTART_DELAY)

    # ----------------------------------------------------------------- listener
    def _on_book(self, instrument_id: str, trades: Sequence[Trade]) -> None:
        ibook = self.subscriber.books.get(instrument_id)
        if ibook is None:
            return
        now = time.monotonic()
        samples = self._samples.get(instrument_id)
        if samples is None:
            samples = self._samples[instrument_id] = deque(maxlen=int((_RATE_WINDOW + 1) / _SAMPLE_EVERY) + 2)
        if samples and samples[-1][1] > ibook.messages_applied:
            samples.clear()  # the book was replaced (a new feed session): start measuring again
        if not samples or now - samples[-1][0] >= _SAMPLE_EVERY:
            samples.append((now, ibook.messages_applied))

