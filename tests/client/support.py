"""Helpers shared by the client tests: bounded polling and a subscriber task that is always cancelled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from feed_server.client.keeper import BookKeeper

__all__ = ["eventually", "running"]


async def eventually(predicate: Callable[[], bool], within: float, step: float = 0.01) -> float:
    """Poll ``predicate`` until true (for at most ``within`` seconds); returns the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(int(within / step) + 1):
        if predicate():
            return loop.time() - start
        await asyncio.sleep(step)
        if loop.time() - start > within:
            break
    assert predicate(), f"not true after {within} s"
    return loop.time() - start


@contextlib.asynccontextmanager
async def running(subscriber: BookKeeper) -> AsyncIterator[asyncio.Task[None]]:
    """``subscriber.run()`` as a task for the block; cancelled (and awaited, bounded) after it."""
    task = asyncio.create_task(subscriber.run(), name="test-subscriber")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(5):
                await task
