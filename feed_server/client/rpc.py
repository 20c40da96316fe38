"""The consumer's gRPC boundary: channel options, the translation of gRPC errors, the instrument list.

Nothing above this module (and the subscriber that uses it) catches a raw ``grpc.aio.AioRpcError``: it becomes a
feed_server.protocol.errors.FeedError that keeps the status code (``code``).
"""

from __future__ import annotations

import logging

import grpc
import grpc.aio

from feed_server.protocol.errors import BadRequest, FeedError, FeedUnavailable, UnknownInstrument
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.pb import market_data_pb2_grpc
from feed_server.protocol.wire import instrument_from_pb

__all__ = [
    "CHANNEL_OPTIONS",
    "MAX_MESSAGE_BYTES",
    "RETRYABLE_CODES",
    "fetch_instruments",
    "list_instruments",
    "translate_rpc_error",
]

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", 1024 * 1024),
    ("grpc.enable_http_proxy", 0),  # a feed address is dialled directly, never through an HTTP proxy
]
# Status codes after which a new connection may succeed. Anything else is the request's fault.
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


def translate_rpc_error(exc: grpc.aio.AioRpcError, address: str, what: str = "") -> FeedError:
    """The feed_server.protocol.errors equivalent of a gRPC error, carrying the call's status as ``code``.

    The class follows the status code alone; the status details only word the message (a refused connection is
    said in plain words)."""
    code = exc.code()
    details = exc.details() or ""
    if code == grpc.StatusCode.NOT_FOUND:
        return UnknownInstrument(details or f"unknown instrument ({what})", code)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return BadRequest(details or f"bad request ({what})", code)
    if code == grpc.StatusCode.UNAVAILABLE:
        lowered = details.lower()
        if "refused" in lowered:
            message = f"no feed server at {address} (connection refused)"
        elif "failed to connect" in lowered or "dns" in lowered or "resolve" in lowered:
            message = f"no feed server at {address} ({details})"
        else:
            message = f"feed server at {address} unavailable: {details or 'connection lost'}"
        return FeedUnavailable(message, code)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return FeedUnavailable(f"feed server at {address} did not answer in time{f' ({what})' if what else ''}", code)
    name = code.name if code is not None else "UNKNOWN"
    if code in RETRYABLE_CODES:
        return FeedUnavailable(f"stream from {address} ended: {name}: {details}", code)
    return FeedError(f"feed server at {address} failed: {name}: {details}", code)


async def fetch_instruments(
    stub: market_data_pb2_grpc.MarketDataStub, address: str, rpc_timeout: float
) -> list[InstrumentSpec]:
    try:
        request = pb.ListInstrumentsRequest()
        response: pb.ListInstrumentsResponse = await stub.ListInstruments(request, timeout=rpc_timeout)
    except grpc.aio.AioRpcError as exc:
        raise translate_rpc_error(exc, address, "ListInstruments") from exc
    specs: list[InstrumentSpec] = []
    for message in response.instruments:
        try:
            specs.append(instrument_from_pb(message))
        except ValueError as exc:
            log.warning("ignoring instrument from %s: %s", address, exc)
    return specs


async def list_instruments(address: str, timeout: float = 5.0) -> list[InstrumentSpec]:  # noqa: ASYNC109 (the RPC deadline)
    """Every instrument the feed server at ``address`` simulates. Raises FeedUnavailable (or FeedError)."""
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        return await fetch_instruments(market_data_pb2_grpc.MarketDataStub(channel), address, timeout)
