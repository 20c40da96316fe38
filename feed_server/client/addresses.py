"""A feed's address picks its transport: ``HOST:PORT`` is a gRPC feed server, ``nats://HOST:PORT`` the feeds
publishing on a NATS server. The CLI and the dashboard take either and build their subscriber here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Unpack

from feed_server.client.grpc_transport import GrpcTransport, SubscriberOptions
from feed_server.client.keeper import Subscriber
from feed_server.client.nats_transport import NatsTransport
from feed_server.client.transport import Transport
from feed_server.protocol.book import MAX_DEPTH
from feed_server.protocol.instruments import InstrumentSpec

__all__ = ["BUS_SCHEME", "is_bus_address", "list_instruments", "make_subscriber", "transport_for"]

BUS_SCHEME = "nats://"


def is_bus_address(address: str) -> bool:
    return address.startswith(BUS_SCHEME)


def transport_for(address: str) -> Transport:
    """The transport ``address`` names: NATS for ``nats://HOST:PORT``, gRPC for ``HOST:PORT``."""
    return NatsTransport(address) if is_bus_address(address) else GrpcTransport(address)


def make_subscriber(
    address: str, instrument_ids: Sequence[str] = (), depth: int = MAX_DEPTH, **options: Unpack[SubscriberOptions]
) -> Subscriber:
    """The subscriber core for ``address``, over the transport it names (``options``: the core's)."""
    return Subscriber(transport_for(address), instrument_ids, depth, **options)


async def list_instruments(address: str, timeout: float = 5.0) -> list[InstrumentSpec]:  # noqa: ASYNC109 (the request's deadline)
    """Every instrument of the feed (or, on NATS, of every feed) at ``address``. Raises FeedUnavailable."""
    return await transport_for(address).list_instruments(timeout)
