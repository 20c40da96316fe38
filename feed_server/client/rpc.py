"""The consumer's gRPC boundary: channel options, the calls, the translation of gRPC errors, the instrument list.

Nothing above this module (and the subscriber that uses it) catches a raw ``grpc.aio.AioRpcError``: it becomes a
feed_server.protocol.errors.FeedError that keeps the status code (``code``). Answers are decoded here too
(:class:`FeedStub` asks grpc for the raw bytes): a message that does not decode (a corrupted stream) is a
FeedUnavailable, where grpc's own decoding would log an error and hand out None.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import DecodeError, Message

from feed_server.protocol.book import MAX_DEPTH
from feed_server.protocol.errors import Code, FeedError, FeedUnavailable, feed_error
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.wire import instrument_from_pb
from feed_server.rpc.status import from_grpc

__all__ = [
    "CHANNEL_OPTIONS",
    "MAX_MESSAGE_BYTES",
    "FeedListing",
    "FeedStub",
    "decode",
    "fetch_instruments",
    "fetch_snapshot",
    "list_instruments",
    "translate_rpc_error",
]

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", 1024 * 1024),
    ("grpc.enable_http_proxy", 0),  # a feed address is dialled directly, never through an HTTP proxy
    # A channel of its own connection: a reconnect after a stalled or corrupted stream opens a new TCP connection
    # rather than reusing the one a process-wide subchannel pool may keep.
    ("grpc.use_local_subchannel_pool", 1),
]
_SERVICE = "/marketdata.v1.MarketData/"
M = TypeVar("M", bound=Message)


def decode(message_type: type[M], data: bytes, address: str, what: str) -> M:
    """One raw answer of the feed, decoded; FeedUnavailable (no status code) when it is not a valid message."""
    try:
        return message_type.FromString(data)
    except DecodeError as exc:
        raise FeedUnavailable(f"a corrupt message from {address} ({what}): {exc}") from exc


class FeedStub:
    """The MarketData service's methods with raw answers, to be decoded with :func:`decode`.

    (The generated stub decodes in grpc, which logs ``Exception deserializing message!`` at ERROR and returns
    None in place of a corrupt message.)"""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.list_instruments: Any = channel.unary_unary(
            _SERVICE + "ListInstruments", request_serializer=pb.ListInstrumentsRequest.SerializeToString
        )
        self.subscribe: Any = channel.unary_stream(
            _SERVICE + "Subscribe", request_serializer=pb.SubscribeRequest.SerializeToString
        )
        self.get_snapshot: Any = channel.unary_unary(
            _SERVICE + "GetSnapshot", request_serializer=pb.SnapshotRequest.SerializeToString
        )


def translate_rpc_error(exc: grpc.aio.AioRpcError, address: str, what: str = "") -> FeedError:
    """The feed_server.protocol.errors equivalent of a gRPC error, carrying the project's code of its status.

    The class follows the status alone; the status details only word the message (a refused connection is said
    in plain words)."""
    status = exc.code()
    code = from_grpc(status)
    details = exc.details() or ""
    if code is Code.UNKNOWN_INSTRUMENT:
        return feed_error(code, details or f"unknown instrument ({what})")
    if code is Code.BAD_REQUEST:
        return feed_error(code, details or f"bad request ({what})")
    if status == grpc.StatusCode.UNAVAILABLE:
        lowered = details.lower()
        if "refused" in lowered:
            message = f"no feed server at {address} (connection refused)"
        elif "failed to connect" in lowered or "dns" in lowered or "resolve" in lowered:
            message = f"no feed server at {address} ({details})"
        else:
            message = f"feed server at {address} unavailable: {details or 'connection lost'}"
        return FeedUnavailable(message, code)
    if code is Code.TIMEOUT:
        return FeedUnavailable(f"feed server at {address} did not answer in time{f' ({what})' if what else ''}", code)
    name = status.name if status is not None else "UNKNOWN"
    if code in (Code.UNAVAILABLE, Code.OVERLOADED) or code is Code.INTERNAL:
        return FeedUnavailable(f"stream from {address} ended: {name}: {details}", code)
    return FeedError(f"feed server at {address} failed: {name}: {details}", code)


class FeedListing(NamedTuple):
    """A feed's ListInstruments answer: its instruments, what it plays (``"simulator (...)"``, ``"replay of
    s.mdrec at 10x"``; "" from an older server) and the deepest depth it serves."""

    specs: list[InstrumentSpec]
    source: str
    max_depth: int


async def fetch_instruments(stub: FeedStub, address: str, rpc_timeout: float) -> FeedListing:
    try:
        raw: bytes = await stub.list_instruments(pb.ListInstrumentsRequest(), timeout=rpc_timeout)
    except grpc.aio.AioRpcError as exc:
        raise translate_rpc_error(exc, address, "ListInstruments") from exc
    response = decode(pb.ListInstrumentsResponse, raw, address, "ListInstruments")
    specs: list[InstrumentSpec] = []
    for message in response.instruments:
        try:
            specs.append(instrument_from_pb(message))
        except ValueError as exc:
            log.warning("ignoring instrument from %s: %s", address, exc)
    return FeedListing(specs, response.source, response.max_depth or MAX_DEPTH)


async def list_instruments(address: str, timeout: float = 5.0) -> list[InstrumentSpec]:  # noqa: ASYNC109 (the RPC deadline)
    """Every instrument the feed server at ``address`` simulates. Raises FeedUnavailable (or FeedError)."""
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        return (await fetch_instruments(FeedStub(channel), address, timeout)).specs


async def fetch_snapshot(
    stub: FeedStub,
    address: str,
    request: pb.SnapshotRequest,
    *,
    timeout: float,  # noqa: ASYNC109 (the RPC deadline)
) -> pb.BookMessage:
    """GetSnapshot, decoded; FeedError (translated) when it fails. (A resync's ``fetch`` over gRPC.)"""
    what = f"GetSnapshot {request.instrument_id}"
    try:
        raw: bytes = await stub.get_snapshot(request, timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        raise translate_rpc_error(exc, address, what) from exc
    return decode(pb.BookMessage, raw, address, what)
