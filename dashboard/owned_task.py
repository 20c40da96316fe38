"""One background task with one owner: started once (idempotent), cancelled and awaited on stop (bounded).

The bridge's subscriber task and the market history's sampler task are each held by one :class:`OwnedTask`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from nicegui import background_tasks

__all__ = ["STOP_TIMEOUT_S", "OwnedTask"]

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0


class OwnedTask:
    """Holds the reference to one task made from ``factory()`` (NiceGUI's background_tasks), named ``name``."""

    def __init__(self, factory: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self._factory = factory
        self.name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the task unless it runs already."""
        if self._task is not None and not self._task.done():
            return
        self._task = background_tasks.create(self._factory(), name=self.name)

    async def stop(self) -> None:
        """Cancel the task and wait for it to end, at most STOP_TIMEOUT_S."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await asyncio.gather(task, return_exceptions=True)
        except TimeoutError:
            log.warning("the %s did not stop within %g s", self.name, STOP_TIMEOUT_S)
