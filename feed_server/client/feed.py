"""The library's front door: :func:`connect` and the :class:`Feed` it opens (the README's "Scripts in Python").

::

    from feed_server.client import connect

    async with connect("127.0.0.1:50051", instruments=["BTC-USD"], depth=10) as feed:  # or "nats://HOST:PORT"
        await feed.wait_live(timeout=10.0)
        book = feed.book("BTC-USD")
        async for update in feed.updates():
            ...

Entering the context starts one subscriber task (feed_server.client.keeper: every message verified, each
broken book resynchronised alone, the connection remade with backoff, never given up) and waits for the feed's
instrument list. Leaving it stops the task and ends every ``updates()`` iterator.

Slow readers of ``updates()``: each iterator holds at most ``max_pending`` updates. Beyond that, a new message
of an instrument that already has an update waiting is folded into that update (its book becomes the latest,
its trades are added to the update's, ``conflated`` counts the folded messages), so memory stays bounded and a
reader that catches up reads current books; the order of each instrument's updates is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from types import TracebackType

from feed_server.client.addresses import make_subscriber
from feed_server.client.keeper import Subscriber
from feed_server.client.views import Book, Instrument, Trade, Update, trades_of
from feed_server.protocol.book import DEFAULT_DEPTH, MAX_DEPTH
from feed_server.protocol.errors import FeedError, FeedUnavailable, UnknownInstrument, quoted
from feed_server.protocol.levels import Trade as TickTrade

__all__ = ["DEFAULT_MAX_PENDING", "MAX_FOLDED_TRADES", "Feed", "connect"]

DEFAULT_MAX_PENDING = 10_000  # updates one updates() iterator holds before it conflates
MAX_FOLDED_TRADES = 10_000  # trades one conflated update holds; the ones beyond are counted (missed_trades)


def connect(
    address: str,
    *,
    instruments: Sequence[str] | None = None,
    depth: int = DEFAULT_DEPTH,
    timeout: float = 10.0,
    max_pending: int = DEFAULT_MAX_PENDING,
) -> Feed:
    """A feed to use as ``async with connect(...) as feed``.

    ``address`` is ``HOST:PORT`` (a gRPC feed server) or ``nats://HOST:PORT`` (the feeds publishing on a NATS
    server). ``instruments``: the ids to subscribe to (None: every instrument the feed lists). ``depth``: the
    levels per side of each :class:`Book` (1..100). Entering raises FeedUnavailable when no instrument list came
    within ``timeout`` seconds, and UnknownInstrument when the feed does not list an id of ``instruments``.
    ValueError for a bad ``depth`` or ``max_pending``."""
    return Feed(address, instruments=instruments, depth=depth, timeout=timeout, max_pending=max_pending)


class Feed:
    """Verified books of a feed, kept in step while the context is open. Made by :func:`connect`."""

    def __init__(
        self,
        address: str,
        *,
        instruments: Sequence[str] | None = None,
        depth: int = DEFAULT_DEPTH,
        timeout: float = 10.0,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        if not 1 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be between 1 and {MAX_DEPTH}, got {depth}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.address = address
        self.depth = depth
        self._timeout = timeout
        self._max_pending = max_pending
        self._subscriber: Subscriber = make_subscriber(address, tuple(instruments or ()), depth)
        self._task: asyncio.Task[None] | None = None
        self._readers: set[_Reader] = set()

    # ------------------------------------------------------------------ the context
    async def __aenter__(self) -> Feed:
        if self._task is not None:
            raise RuntimeError("this Feed is already open")
        self._task = asyncio.create_task(self._subscriber.run(), name=f"feed-subscriber {self.address}")
        try:
            await self._wait_listed()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the subscriber task and end every ``updates()`` iterator (leaving the context does it)."""
        for reader in list(self._readers):
            reader.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _wait_listed(self) -> None:
        subscriber = self._subscriber
        wanted = subscriber.instrument_ids
        try:
            async with asyncio.timeout(self._timeout):
                while True:
                    subscriber.changed.clear()
                    if subscriber.books and all(iid in subscriber.books for iid in wanted):
                        return
                    if isinstance(subscriber.failure, UnknownInstrument):
                        raise subscriber.failure
                    await subscriber.changed.wait()
        except TimeoutError:
            why = subscriber.problem or "no instrument list"
            raise FeedUnavailable(f"no instrument list from {self.address} within {self._timeout:g} s: {why}") from None

    # ------------------------------------------------------------------ reading
    @property
    def instruments(self) -> dict[str, Instrument]:
        """The subscribed instruments, by id, as the feed lists them."""
        return {iid: Instrument.of(entry.spec) for iid, entry in self._subscriber.books.items()}

    @property
    def problem(self) -> str | None:
        """Why the books are not live, in one line (None while the connection is streaming)."""
        return self._subscriber.problem

    @property
    def source(self) -> str:
        """What the feed plays, as it says (``"simulator (...)"``, ``"replay of s.mdrec at 10x"``)."""
        return self._subscriber.source

    def book(self, instrument_id: str) -> Book:
        """The instrument's book now. UnknownInstrument when it is not subscribed."""
        entry = self._subscriber.books.get(instrument_id)
        if entry is None:
            raise UnknownInstrument(f"{quoted(instrument_id)} is not subscribed on this feed")
        return Book.of(entry, self.depth)

    async def wait_live(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (part of the public API)
        """Wait until every subscribed book is live; FeedUnavailable (saying why) after ``timeout`` seconds."""
        self._check_open()
        try:
            await self._subscriber.wait_live(timeout)
        except TimeoutError:
            stale = {iid: entry.stale_reason for iid, entry in self._subscriber.books.items() if entry.stale}
            raise FeedUnavailable(f"books not live within {timeout:g} s: {_reasons(stale)}") from None
        except FeedError:
            raise
        except Exception as exc:  # the subscriber task failed: said as the feed being unavailable
            raise FeedUnavailable(f"the subscriber stopped: {type(exc).__name__}: {exc}") from exc

    def updates(self) -> AsyncIterator[Update]:
        """Every verified message of the subscribed instruments, in order per instrument, as :class:`Update`;
        also every change of a book's live state (``update.book.live``, ``.reason``). Never ends while the
        context is open. A reader that falls behind gets conflated updates (see the module docstring)."""
        self._check_open()
        reader = _Reader(self, self._max_pending)
        self._readers.add(reader)
        return reader

    def _check_open(self) -> None:
        if self._task is None:
            raise RuntimeError("use the Feed inside `async with connect(...) as feed:`")

    def _drop_reader(self, reader: _Reader) -> None:
        self._readers.discard(reader)
        self._subscriber.remove_listener(reader.on_book)


class _Pending:
    """One update waiting in a reader: its book, its trades and how many messages it holds."""

    __slots__ = ("book", "conflated", "missed", "trades")

    def __init__(self, book: Book, trades: list[Trade]) -> None:
        self.book = book
        self.trades = trades
        self.conflated = 0
        self.missed = 0

    def fold(self, book: Book, trades: list[Trade]) -> None:
        self.book = book
        self.conflated += 1
        room = MAX_FOLDED_TRADES - len(self.trades)
        if len(trades) > room:
            self.missed += len(trades) - max(room, 0)
            trades = trades[: max(room, 0)]
        self.trades.extend(trades)

    def update(self) -> Update:
        book = self.book
        return Update(book.instrument_id, book.sequence, book, tuple(self.trades), self.conflated, self.missed)


class _Reader:
    """One ``updates()`` iterator: a book listener filling a bounded queue (see the module docstring)."""

    def __init__(self, feed: Feed, max_pending: int) -> None:
        self._feed = feed
        self._books = feed._subscriber.books
        self._depth = feed.depth
        self._max_pending = max_pending
        self._queue: deque[_Pending] = deque()
        self._latest: dict[str, _Pending] = {}  # per instrument: its newest waiting update
        self._ready = asyncio.Event()
        self._closed = False
        feed._subscriber.add_listener(self.on_book)

    def on_book(self, instrument_id: str, trades: Sequence[TickTrade]) -> None:
        entry = self._books.get(instrument_id)
        if entry is None or self._closed:
            return
        book = Book.of(entry, self._depth)
        public = trades_of(entry.spec, trades, entry.last_event_time_ns) if trades else []
        latest = self._latest.get(instrument_id)
        if latest is not None and len(self._queue) >= self._max_pending:
            latest.fold(book, public)
        else:
            pending = _Pending(book, public)
            self._queue.append(pending)
            self._latest[instrument_id] = pending
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._feed._drop_reader(self)
        self._ready.set()

    def __aiter__(self) -> _Reader:
        return self

    async def __anext__(self) -> Update:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        pending = self._queue.popleft()
        instrument_id = pending.book.instrument_id
        if self._latest.get(instrument_id) is pending:
            del self._latest[instrument_id]
        return pending.update()

    async def aclose(self) -> None:
        """Stop this iterator (its queue is let go)."""
        self.close()
        self._queue.clear()
        self._latest.clear()


def _reasons(stale: dict[str, str | None]) -> str:
    shown = [f"{iid}: {reason or 'stale'}" for iid, reason in list(stale.items())[:5]]
    more = f" (and {len(stale) - 5} more)" if len(stale) > 5 else ""
    return "; ".join(shown) + more if shown else "no book"
