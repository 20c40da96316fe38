"""A feed's address picks its transport: ``HOST:PORT`` is a gRPC feed server, ``nats://HOST:PORT`` the feeds
publishing on a NATS server. The CLI and the dashboard take either and build their subscriber here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from feed_server.client.bus_subscriber import BusSubscriber, list_bus_instruments
from feed_server.client.keeper import BookKeeper
from feed_server.client.rpc import list_instruments as list_grpc_instruments
from feed_server.client.subscriber import FeedSubscriber
from feed_server.protocol.book import MAX_DEPTH
from feed_server.protocol.instruments import InstrumentSpec

__all__ = ["BUS_SCHEME", "is_bus_address", "list_instruments", "make_subscriber"]

BUS_SCHEME = "nats://"


def is_bus_address(address: str) -> bool:
    return address.startswith(BUS_SCHEME)


def make_subscriber(
    address: str, instrument_ids: Sequence[str] = (), depth: int = MAX_DEPTH, **options: Any
) -> BookKeeper:
    """The subscriber for ``address``: a BusSubscriber on NATS, a FeedSubscriber on gRPC (``options`` are
    BookKeeper's keyword arguments)."""
    kind = BusSubscriber if is_bus_address(address) else FeedSubscriber
    return kind(address, instrument_ids, depth, **options)


async def list_instruments(address: str, timeout: float = 5.0) -> list[InstrumentSpec]:  # noqa: ASYNC109 (the request's deadline)
    """Every instrument of the feed (or, on NATS, of every feed) at ``address``. Raises FeedUnavailable."""
    if is_bus_address(address):
        return await list_bus_instruments(address, timeout)
    return await list_grpc_instruments(address, timeout)
