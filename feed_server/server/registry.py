"""Who subscribes to what: the feed's subscriptions, grouped by (instrument, depth).

The fan-out (feed_server.server.fanout) builds one message per (instrument, depth) that anyone subscribes to,
from that group's depth view, and hands it to the group's subscribers; this registry is the one place that
knows those groups. :meth:`Registry.add` registers a subscription in one synchronous step (the fan-out then
puts its initial snapshots in its buffer before anything else can run), :meth:`Registry.remove` takes it out
again (a group with no subscriber left is dropped: nothing is built for it any more).

The registry also says when the engine may run: ``subscribed`` is set by every new subscription (an idle engine
waits on it) and :meth:`Registry.wait_for_takers` holds an unpaced source until its subscribers have taken
what they were given.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence

from feed_server.server.depth_view import DepthView
from feed_server.server.subscription import Subscription

__all__ = ["Group", "Registry"]

logger = logging.getLogger("feed_server.server.fanout")


class Group:
    """The subscribers of one (instrument, depth) and the depth view their messages are built from."""

    __slots__ = ("subscribers", "view")

    def __init__(self, view: DepthView) -> None:
        self.view = view
        self.subscribers: list[Subscription] = []


class Registry:
    """The open subscriptions of a feed's instruments, by (instrument, depth) (see the module docstring)."""

    def __init__(self, instrument_ids: Iterable[str], max_backlog: int, max_batch: int) -> None:
        self.max_backlog = max_backlog
        self.max_batch = max_batch
        self.subscribed = asyncio.Event()  # set by every new subscription (the engine waits on it when idle)
        self._taken = asyncio.Event()  # set each time a subscriber takes a batch (see wait_for_takers)
        self._groups: dict[str, dict[int, Group]] = {iid: {} for iid in instrument_ids}
        self._subscriptions: dict[int, Subscription] = {}
        self._next_sub_id = 1

    @property
    def count(self) -> int:
        """Open subscriptions."""
        return len(self._subscriptions)

    def subscriptions(self) -> list[Subscription]:
        """The open subscriptions, oldest first."""
        return list(self._subscriptions.values())

    def groups(self, instrument_id: str) -> dict[int, Group]:
        """``instrument_id``'s groups by depth: the registry's own dict, the same object for the registry's life
        (the fan-out keeps it to read per message; only the registry changes it)."""
        return self._groups[instrument_id]

    def add(
        self,
        instrument_ids: Sequence[str],
        depth: int,
        session_id: str,
        new_view: Callable[[str, int], DepthView],
    ) -> Subscription:
        """Register a new subscription to ``instrument_ids`` at ``depth`` (its buffer empty); a group that does
        not exist yet gets its depth view from ``new_view(instrument_id, depth)``."""
        sub = Subscription(
            self._next_sub_id, instrument_ids, depth, self.max_backlog, self.max_batch, self._taken, session_id
        )
        self._next_sub_id += 1
        for iid in instrument_ids:
            groups = self._groups[iid]
            group = groups.get(depth)
            if group is None:
                group = groups[depth] = Group(new_view(iid, depth))
            group.subscribers.append(sub)
        self._subscriptions[sub.sub_id] = sub
        self.subscribed.set()
        logger.debug("subscribed %r", sub)
        return sub

    def remove(self, sub: Subscription) -> None:
        """Take ``sub`` out (idempotent) and end its iteration."""
        if self._subscriptions.pop(sub.sub_id, None) is not None:
            for iid in sub.instrument_ids:
                groups = self._groups[iid]
                group = groups.get(sub.depth)
                if group is None:
                    continue
                group.subscribers.remove(sub)
                if not group.subscribers:
                    del groups[sub.depth]
            logger.debug("unsubscribed %r (resyncs %d)", sub, sub.resyncs)
        sub.close()

    def mark_session(self, session_id: str) -> None:
        """Mark a new session in every subscription's buffer, after what it holds."""
        for sub in self._subscriptions.values():
            sub.mark_session(session_id)

    async def wait_for_takers(self, backlog: int) -> None:
        """Wait until there is a subscriber and none has ``backlog`` messages or more not yet taken (how an
        unpaced source is played as fast as the subscribers take it)."""
        while True:
            subscriptions = self._subscriptions.values()
            if not subscriptions:
                self.subscribed.clear()
                await self.subscribed.wait()
            elif max(sub.backlog for sub in subscriptions) >= backlog:
                self._taken.clear()
                await self._taken.wait()
            else:
                return
