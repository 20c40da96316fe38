"""Helpers shared by the client tests: a subscriber task that is always cancelled.

``eventually`` is tests/waiting.py's (the one polling helper), named here for this module's importers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from feed_server.client.keeper import Subscriber
from tests.waiting import eventually

__all__ = ["eventually", "running"]


@contextlib.asynccontextmanager
async def running(subscriber: Subscriber) -> AsyncIterator[asyncio.Task[None]]:
    """``subscriber.run()`` as a task for the block; cancelled (and awaited, bounded) after it."""
    task = asyncio.create_task(subscriber.run(), name="test-subscriber")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(5):
                await task
