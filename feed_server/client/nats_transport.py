"""The NATS transport of the subscriber core (``nats://HOST:PORT``): the same books, syncs and resyncs as gRPC.

Feeds started with ``--publish`` publish every message of every instrument once, at full depth, to the
instrument's subject (feed_server.bus.subjects). :class:`NatsTransport` is everything NATS on the consumer side;
every check is the core's own (feed_server.client.keeper, feed_server.client.sync):

- **Instruments**: a request on ``marketdata.v1.instruments`` gathers every feed's answer for ``list_window``
  seconds (sharded feeds each answer for their own instruments). No answer at all is a failed connection, retried
  as any. A message of an instrument no answer named (a feed started later) makes it ask again.
- **Sessions are per instrument**: each message carries its feed's session (``Marketdata-Session``), and sharded
  feeds each have their own. A new session of one instrument starts that book over, and a snapshot of another
  session than the instrument's stream is never applied.
- **Joining**: the stream does not open with snapshots; the first message of an instrument (or the first after a
  silence or a new session) buffers the stream and asks the feed for a snapshot (request/reply on
  ``marketdata.v1.snapshot.<id>``), which the buffered messages then continue, as after a gap.
- **Depth**: the books are kept at the depth the feed publishes (every checksum is of that depth); a consumer
  asking for fewer levels reads the top of the same verified book.
- **Silence**: an instrument without a message for ``heartbeat_timeout`` seconds (feeds send heartbeats) is
  marked stale, alone (time this process was too busy to read does not count): a dead shard stales its own
  instruments, the others keep flowing. A lost NATS server marks every book stale at once; the client
  reconnects by itself (feed_server.bus.connection) and every book comes back through a snapshot.
- **Slow consumer**: a process that falls behind holds at most ``pending_limit`` unhandled messages (and 64 MiB)
  per subscription; the NATS client drops the ones beyond (a SlowConsumerError, logged), which are gaps in the
  sequence, repaired by a snapshot like any gap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Unpack

import nats
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg

from feed_server.bus.connection import BusLink, BusUnavailable, connect, gather
from feed_server.bus.subjects import (
    BOOK_PREFIX,
    ERROR_HEADER,
    ERROR_MESSAGE_HEADER,
    INSTRUMENTS_SUBJECT,
    SESSION_HEADER,
    book_subject,
    instrument_of,
    snapshot_subject,
)
from feed_server.client.grpc_transport import SubscriberOptions
from feed_server.client.keeper import Subscriber
from feed_server.client.resync import SNAPSHOT_TIMEOUT
from feed_server.client.rpc import decode
from feed_server.client.transport import BookPort
from feed_server.protocol.book import MAX_DEPTH
from feed_server.protocol.errors import Code, FeedUnavailable, feed_error
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.wire import instrument_from_pb

__all__ = ["LIST_WINDOW", "BusSubscriber", "NatsTransport", "list_bus_instruments"]

log = logging.getLogger("feed_server.client.subscriber")  # the subscriber's log lines, as users grep them

LIST_WINDOW = 0.3  # seconds during which the feeds' answers to an instrument-list request are gathered
WATCH_INTERVAL = 0.1  # seconds between two checks of the connection and of each instrument's silence
PENDING_LIMIT = 100_000  # messages received and not yet handled, per subscription; NATS drops the ones beyond
PENDING_BYTES_LIMIT = 64 * 1024 * 1024  # the same, in bytes
_CODES = {code.value: code for code in Code}


class NatsTransport:
    """The feeds publishing on the NATS server at ``address``. See the module docstring."""

    def __init__(self, address: str, *, list_window: float = LIST_WINDOW, pending_limit: int = PENDING_LIMIT) -> None:
        self._address = address
        self.list_window = list_window
        self.pending_limit = pending_limit
        self._link: BusLink | None = None  # while a connection is open
        self._ids: dict[str, str] = {}  # subject -> instrument id, for the subjects seen

    @property
    def address(self) -> str:
        return self._address

    async def list_instruments(self, timeout: float) -> list[InstrumentSpec]:  # noqa: ASYNC109 (the deadline)
        return await list_bus_instruments(self._address, timeout)

    async def stream(self, books: BookPort) -> None:
        try:
            link = await connect(self._address, name="marketdata-consumer", timeout=max(books.heartbeat_timeout, 2.0))
        except BusUnavailable as exc:
            raise FeedUnavailable(str(exc)) from None
        self._link = link
        try:
            await self._list(link, books, first=True)
            # Subscribing last: a message may arrive during the awaits below, and its snapshot request must start.

            async def on_message(msg: Msg) -> None:
                self._on_message(msg, books)

            subjects = [book_subject(iid) for iid in books.instrument_ids] or [BOOK_PREFIX + ">"]
            for subject in subjects:
                await link.client.subscribe(
                    subject,
                    cb=on_message,
                    pending_msgs_limit=self.pending_limit,
                    pending_bytes_limit=PENDING_BYTES_LIMIT,
                )
            await link.client.flush()
            books.stream_opened()
            await self._watch(link, books)
        finally:
            self._link = None
            await link.close()

    async def _list(self, link: BusLink, books: BookPort, *, first: bool = False) -> None:
        """Gather the feeds' instrument lists and hand over their union with the instruments known already (a
        feed that is down still has its books, stale)."""
        listings = await _gather_listings(link, self.list_window)
        if not listings and first:
            raise FeedUnavailable(
                f"no feed publishes on the NATS server at {self._address} "
                f"(no answer to {INSTRUMENTS_SUBJECT} within {self.list_window:g} s)"
            )
        listed: dict[str, InstrumentSpec] = {}
        depths: dict[str, int] = {}
        sources: list[str] = []
        for specs, source, depth in listings:
            for spec in specs:
                listed.setdefault(spec.instrument_id, spec)
                depths.setdefault(spec.instrument_id, depth)
            if source and source not in sources:
                sources.append(source)
        # The page shows "Source: ...".
        shown = f"{'; '.join(sources)}, via {self._address}" if sources else ""
        known = {**listed, **books.instruments}  # the known specs win, as within a session
        books.take_listing(list(known.values()), shown or books.source, depths)

    def _on_message(self, msg: Msg, books: BookPort) -> None:
        subject = msg.subject
        instrument_id = self._ids.get(subject)
        if instrument_id is None:
            try:
                instrument_id = instrument_of(subject)
            except ValueError:
                return  # not a subject this contract writes
            if len(self._ids) < 100_000:
                self._ids[subject] = instrument_id
        headers = msg.headers
        session = headers.get(SESSION_HEADER, "") if headers else ""
        books.instrument_message(instrument_id, session, msg.data)

    async def fetch_snapshot(self, request: pb.SnapshotRequest) -> pb.BookMessage:
        link = self._link
        subject = snapshot_subject(request.instrument_id)
        where = f"the NATS server at {self._address}"
        if link is None:
            raise FeedUnavailable(f"no connection to {where}")
        try:
            reply = await link.client.request(subject, request.SerializeToString(), timeout=SNAPSHOT_TIMEOUT)
        except nats.errors.NoRespondersError:
            raise FeedUnavailable(f"no feed answers {subject} on {where}") from None
        except nats.errors.TimeoutError:
            raise FeedUnavailable(f"no answer on {subject} from {where} within {SNAPSHOT_TIMEOUT:g} s") from None
        except (nats.errors.Error, OSError) as exc:
            raise FeedUnavailable(f"snapshot request on {subject} to {where} failed: {exc!r}") from None
        headers = reply.headers or {}
        status = headers.get(ERROR_HEADER)
        if status is not None:
            code = _CODES.get(status, Code.INTERNAL)
            raise feed_error(code, headers.get(ERROR_MESSAGE_HEADER) or f"{status} ({subject})")
        return decode(pb.BookMessage, reply.data, self._address, subject)

    async def _watch(self, link: BusLink, books: BookPort) -> None:
        """Until the connection closes: follow the NATS connection, stale each silent instrument, and list the
        instruments again when unknown ones appear."""
        loop = asyncio.get_running_loop()
        lost = f"lost the NATS server at {self._address}; reconnecting"
        while True:
            due = loop.time() + WATCH_INTERVAL
            await asyncio.sleep(WATCH_INTERVAL)
            late = loop.time() - due
            if link.client.is_closed:
                raise FeedUnavailable(f"the connection to the NATS server at {self._address} closed")
            if not link.connected:
                books.link_lost(lost)
                continue
            books.link_back()
            # This process may have been busy (its messages may still wait unread in the client's queue): the
            # time it could not read is no silence of the feeds.
            books.check_silence(late if late > WATCH_INTERVAL else 0.0, "on NATS")
            if books.wants_listing():
                await self._list(link, books)


async def _gather_listings(link: BusLink, window: float) -> list[tuple[list[InstrumentSpec], str, int]]:
    """Every feed's instrument list: (specs, source, depth) per answer; answers that do not decode are skipped."""
    try:
        answers = await gather(link.client, INSTRUMENTS_SUBJECT, b"", window)
    except (nats.errors.Error, OSError) as exc:
        raise FeedUnavailable(f"instrument list request to the NATS server at {link.url} failed: {exc!r}") from None
    listings = []
    for answer in answers:
        try:
            response = pb.ListInstrumentsResponse.FromString(answer.data)
        except DecodeError:
            log.warning("ignoring an instrument list that does not decode from the NATS server at %s", link.url)
            continue
        specs = []
        for message in response.instruments:
            try:
                specs.append(instrument_from_pb(message))
            except ValueError as exc:
                log.warning("ignoring instrument from the NATS server at %s: %s", link.url, exc)
        listings.append((specs, response.source, response.max_depth or MAX_DEPTH))
    return listings


async def list_bus_instruments(url: str, timeout: float = 5.0) -> list[InstrumentSpec]:  # noqa: ASYNC109 (the start-up deadline)
    """Every instrument the feeds publishing on the NATS server at ``url`` have. Raises FeedUnavailable."""
    try:
        link = await connect(url, name="marketdata-consumer", timeout=timeout)
    except BusUnavailable as exc:
        raise FeedUnavailable(str(exc)) from None
    try:
        listings = await _gather_listings(link, LIST_WINDOW)
    finally:
        await link.close()
    if not listings:
        raise FeedUnavailable(f"no feed publishes on the NATS server at {url} (no answer within {LIST_WINDOW:g} s)")
    return [spec for specs, _, _ in listings for spec in specs]


def BusSubscriber(
    address: str,
    instrument_ids: Sequence[str] = (),
    depth: int = MAX_DEPTH,
    *,
    list_window: float = LIST_WINDOW,
    pending_limit: int = PENDING_LIMIT,
    **options: Unpack[SubscriberOptions],
) -> Subscriber:
    """A subscriber core over NATS to the feeds publishing on the NATS server at ``address``."""
    transport = NatsTransport(address, list_window=list_window, pending_limit=pending_limit)
    return Subscriber(transport, instrument_ids, depth, **options)
