"""One subscriber's registration and bounded buffer in the fan-out (feed_server.server.fanout owns them).

The fan-out appends to ``_buffer`` and sets ``_wakeup``; the subscriber's consumer (a gRPC stream) takes
everything buffered at once, at most ``max_batch`` messages per batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from feed_server.protocol.pb import market_data_pb2 as pb

__all__ = ["Subscription"]


class Subscription:
    """One subscriber's registration and bounded buffer. Created by :meth:`Fanout.subscribe`."""

    def __init__(
        self,
        sub_id: int,
        instrument_ids: Sequence[str],
        depth: int,
        max_backlog: int,
        max_batch: int,
        taken: asyncio.Event | None = None,
    ) -> None:
        """``taken`` (the fan-out's) is set each time the consumer takes a batch."""
        self.sub_id = sub_id
        self.instrument_ids = tuple(instrument_ids)
        self.depth = depth
        self.max_backlog = max_backlog
        self.max_batch = max_batch
        self.resyncs = 0
        self.delivered = 0
        self.closed = False
        self._buffer: deque[pb.BookMessage] = deque()
        self._wakeup = asyncio.Event()
        self._taken = taken

    def __repr__(self) -> str:
        return f"Subscription({self.sub_id}, {len(self.instrument_ids)} instruments, depth={self.depth})"

    @property
    def backlog(self) -> int:
        """Messages buffered and not yet taken by the consumer."""
        return len(self._buffer)

    async def next_batch(self) -> list[pb.BookMessage] | None:
        """Everything buffered (up to ``max_batch`` messages), waiting for something; None once closed."""
        while not self._buffer:
            if self.closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        return self.take_nowait()

    def take_nowait(self) -> list[pb.BookMessage]:
        """Everything buffered now (up to ``max_batch`` messages), without waiting; maybe empty."""
        buffer = self._buffer
        if len(buffer) <= self.max_batch:
            batch = list(buffer)
            buffer.clear()
        else:
            batch = [buffer.popleft() for _ in range(self.max_batch)]
        self.delivered += len(batch)
        if self._taken is not None:
            self._taken.set()
        return batch

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> list[pb.BookMessage]:
        batch = await self.next_batch()
        if batch is None:
            raise StopAsyncIteration
        return batch

    def _close(self) -> None:
        self.closed = True
        self._wakeup.set()
