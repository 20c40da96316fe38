"""The recorder: subscribe to a feed like any client and write every stream item, as received, to a recording.

The stream items are taken from grpc as raw bytes and written unparsed (only the first item of each stream is
decoded, for its session id), so that the recorder keeps up with the feed at its highest rate. A lost connection
or a restarted feed is retried with backoff, into the same file: the new stream starts with INITIAL snapshots and
its items carry the new session id, so the file stays consistent. The recording ends at ``duration`` seconds,
after ``count`` items, or when ``stop`` is set (SIGINT/SIGTERM in the CLI); the file is then closed cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from feed_server.client.rpc import (
    CHANNEL_OPTIONS,
    FeedStub,
    decode,
    fetch_instruments,
    translate_rpc_error,
)
from feed_server.pacing import Backoff
from feed_server.protocol.book import MAX_DEPTH
from feed_server.protocol.errors import BadRequest, FeedError, FeedUnavailable
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.wire import instrument_to_pb
from feed_server.record.format import RecordingWriter

__all__ = ["RECORDER_NAME", "RecordOptions", "RecordSummary", "record"]

logger = logging.getLogger(__name__)

RECORDER_NAME = "feed_server.record 1"
_SUBSCRIBE = "/marketdata.v1.MarketData/Subscribe"


@dataclass(frozen=True)
class RecordOptions:
    address: str
    out: Path
    instrument_ids: Sequence[str] = ()  # empty: every instrument the feed lists
    depth: int = MAX_DEPTH
    duration: float | None = None  # seconds
    count: int | None = None  # stream items
    connect_timeout: float = 3.0  # how long the first ListInstruments may keep failing before giving up
    backoff_initial: float = 0.2  # reconnect delays
    backoff_max: float = 5.0


@dataclass
class RecordSummary:
    items: int = 0
    bytes: int = 0  # the file's size
    seconds: float = 0.0
    sessions: list[str] = field(default_factory=list)  # in the order they were seen
    reconnects: int = 0


async def record(options: RecordOptions, stop: asyncio.Event) -> RecordSummary:
    """Record until ``options.duration``, ``options.count`` or ``stop``; the summary of what was written.

    Raises FeedError when the feed cannot be reached within ``connect_timeout`` at the start, or answers with a
    status that retrying cannot heal (an unknown instrument, a bad depth)."""
    async with grpc.aio.insecure_channel(options.address, options=CHANNEL_OPTIONS) as channel:
        instruments = await _first_instruments(FeedStub(channel), options)
        session = _Session(options, channel, instruments)
        started = time.monotonic()
        try:
            task = asyncio.create_task(session.run(), name="recorder")
            stopper = asyncio.create_task(stop.wait(), name="recorder-stop")
            try:
                await asyncio.wait({task, stopper}, timeout=options.duration, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pending in (task, stopper):
                    pending.cancel()
                await asyncio.wait({task, stopper})
            failure = None if task.cancelled() else task.exception()
            if failure is not None:
                raise failure
        finally:
            session.summary.seconds = time.monotonic() - started
            session.close()
        return session.summary


async def _first_instruments(stub: FeedStub, options: RecordOptions) -> list[pb.Instrument]:
    """The instruments to record, as the feed lists them; retried while the feed is unreachable, up to
    ``connect_timeout`` seconds."""
    deadline = time.monotonic() + options.connect_timeout
    backoff = Backoff(0.05, 0.5, random.Random())
    while True:
        remaining = deadline - time.monotonic()
        try:
            specs = (await fetch_instruments(stub, options.address, max(remaining, 0.1))).specs
            break
        except FeedUnavailable:
            delay = backoff.delay()
            if time.monotonic() + delay >= deadline:
                raise
            await asyncio.sleep(delay)
    listed = [instrument_to_pb(spec) for spec in specs]
    if not options.instrument_ids:
        return listed
    by_id = {message.instrument_id: message for message in listed}
    unknown = [iid for iid in options.instrument_ids if iid not in by_id]
    if unknown:
        raise BadRequest(
            f"the feed at {options.address} has no instrument {', '.join(map(repr, unknown))} "
            f"(it lists {', '.join(by_id) or 'none'})"
        )
    return [by_id[iid] for iid in options.instrument_ids]


class _Session:
    """The one task that owns the stream and the writer (the file is created at the first item, whose session
    id goes into the header)."""

    def __init__(self, options: RecordOptions, channel: grpc.aio.Channel, instruments: list[pb.Instrument]) -> None:
        self.options = options
        self.instruments = instruments
        self.summary = RecordSummary()
        self._subscribe: Any = channel.unary_stream(
            _SUBSCRIBE, request_serializer=pb.SubscribeRequest.SerializeToString, response_deserializer=None
        )
        self._request = pb.SubscribeRequest(
            instrument_ids=[message.instrument_id for message in instruments], depth=options.depth
        )
        self._writer: RecordingWriter | None = None
        self._start_time_ns = time.time_ns()
        self._backoff = Backoff(options.backoff_initial, options.backoff_max, random.Random())

    def _open(self, session_id: str) -> RecordingWriter:
        header = pb.RecordingHeader(
            instruments=self.instruments,
            depth=self.options.depth,
            source_address=self.options.address,
            session_id=session_id,
            start_time_ns=self._start_time_ns,
            recorder=RECORDER_NAME,
        )
        return RecordingWriter(self.options.out, header)

    def close(self) -> None:
        """Write the last frame and close the file (a header-only file when nothing was received)."""
        if self._writer is None:
            self._writer = self._open("")
        self._writer.close()
        self.summary.bytes = self.options.out.stat().st_size

    async def run(self) -> None:
        """Stream and write until ``count`` items (returns), reconnecting after every failure that may heal."""
        count = self.options.count
        while True:
            try:
                if await self._stream(count):
                    return
                error: FeedError = FeedUnavailable(f"the feed at {self.options.address} ended the stream")
            except grpc.aio.AioRpcError as exc:
                error = translate_rpc_error(exc, self.options.address, "Subscribe")
                if error.permanent:
                    raise error from exc
            except FeedUnavailable as exc:  # a first item that does not decode
                error = exc
            delay = self._backoff.delay()
            logger.warning("%s; reconnecting in %.1f s", error, delay)
            await asyncio.sleep(delay)
            self.summary.reconnects += 1

    async def _stream(self, count: int | None) -> bool:
        """One Subscribe call, written item by item; True when ``count`` items are written."""
        call = self._subscribe(self._request)
        try:
            first = True
            summary = self.summary
            async for item in call:
                now = time.time_ns()
                if first:
                    first = False
                    self._first_item(item)
                writer = self._writer
                assert writer is not None
                writer.write(now, item)
                summary.items += 1
                if count is not None and summary.items >= count:
                    return True
            return False
        finally:
            call.cancel()

    def _first_item(self, item: bytes) -> None:
        session_id = decode(pb.SubscribeResponse, item, self.options.address, "Subscribe").session_id
        if self._writer is None:
            self._writer = self._open(session_id)
        else:
            logger.info("recording session %s of the feed at %s", session_id, self.options.address)
        self.summary.sessions.append(session_id)
        self._backoff.reset()
