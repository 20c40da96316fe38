"""One subscriber's registration and bounded buffer in the fan-out (feed_server.server.fanout owns them).

The fan-out hands it messages (:meth:`Subscription.push`, which refuses one when the buffer is full), replaces a
full backlog by fresh snapshots (:meth:`Subscription.resync`) and ends it (:meth:`Subscription.close`); the
subscription alone touches its buffer and its wake-up. The subscriber's consumer (a gRPC stream) takes
everything buffered at once, at most ``max_batch`` messages per batch. ``session_id`` is the session of the
batch just taken: where the fan-out starts a new session (a replay's next pass), it marks the place in each
buffer (:meth:`Subscription.mark_session`), so what was buffered before is still delivered, under its own
session, and a batch never holds messages of two sessions.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import cast

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
        session_id: str = "",
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
        self.session_id = session_id  # the session of the last batch taken (see the module docstring)
        self._buffer: deque[pb.BookMessage | str] = deque()  # messages, and new sessions' ids where they start
        self._marks = 0  # session ids in the buffer
        self._wakeup = asyncio.Event()
        self._taken = taken

    def __repr__(self) -> str:
        return f"Subscription({self.sub_id}, {len(self.instrument_ids)} instruments, depth={self.depth})"

    @property
    def backlog(self) -> int:
        """Messages buffered and not yet taken by the consumer."""
        return len(self._buffer)

    async def next_batch(self) -> list[pb.BookMessage] | None:
        """Everything buffered (up to ``max_batch`` messages, one session's), waiting for something; None once
        closed."""
        while True:
            while not self._buffer:
                if self.closed:
                    return None
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = self.take_nowait()
            if batch:
                return batch

    def take_nowait(self) -> list[pb.BookMessage]:
        """Everything buffered now (up to ``max_batch`` messages, of one session: ``session_id``), without
        waiting; maybe empty."""
        buffer = self._buffer
        if self._marks:
            batch = self._take_marked()
        elif len(buffer) <= self.max_batch:
            batch = cast(list[pb.BookMessage], list(buffer))
            buffer.clear()
        else:
            batch = cast(list[pb.BookMessage], [buffer.popleft() for _ in range(self.max_batch)])
        self.delivered += len(batch)
        if self._taken is not None:
            self._taken.set()
        return batch

    def _take_marked(self) -> list[pb.BookMessage]:
        """take_nowait() when the buffer holds a new session's start: the session's messages up to the next."""
        buffer = self._buffer
        while buffer and isinstance(buffer[0], str):
            self.session_id = cast(str, buffer.popleft())
            self._marks -= 1
        batch: list[pb.BookMessage] = []
        while buffer and len(batch) < self.max_batch and not isinstance(buffer[0], str):
            batch.append(cast(pb.BookMessage, buffer.popleft()))
        return batch

    def mark_session(self, session_id: str) -> None:
        """A new session starts after what is buffered now (at once when nothing is)."""
        if self._buffer:
            self._buffer.append(session_id)
            self._marks += 1
        else:
            self.session_id = session_id

    def push(self, message: pb.BookMessage) -> bool:
        """Buffer one message and wake the consumer; False (nothing buffered) when the buffer already holds
        ``max_backlog`` messages: the fan-out then resyncs it instead."""
        buffer = self._buffer
        if len(buffer) >= self.max_backlog:
            return False
        buffer.append(message)
        if not self._wakeup.is_set():
            self._wakeup.set()
        return True

    def resync(self, snapshots: Sequence[pb.BookMessage], session_id: str) -> None:
        """Forget everything buffered and buffer ``snapshots`` instead (of ``session_id``); counts a resync."""
        self._buffer.clear()
        self._marks = 0
        self.session_id = session_id
        self._buffer.extend(snapshots)
        self.resyncs += 1
        self._wakeup.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> list[pb.BookMessage]:
        batch = await self.next_batch()
        if batch is None:
            raise StopAsyncIteration
        return batch

    def close(self) -> None:
        """End the consumer's iteration (after what is buffered)."""
        self.closed = True
        self._wakeup.set()
