"""What the subscriber core (feed_server.client.keeper.Subscriber) and a transport promise each other.

A :class:`Transport` reaches a feed: ``list_instruments`` once (the CLI's ``--list``), ``stream`` for one
connection (list the instruments, open the stream of message batches, hand them to the core's
:class:`BookPort` until the connection ends, then raise a FeedError), ``fetch_snapshot`` of one instrument at a
depth (the core's resynchronisations, while a connection is open). The gRPC transport is
feed_server.client.grpc_transport, the NATS one feed_server.client.nats_transport; each translates its own
errors into feed_server.protocol.errors at its boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from feed_server.client.stats import SubscriberStats
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.pb import market_data_pb2 as pb

__all__ = ["BookPort", "Transport"]


class BookPort(Protocol):
    """The core's side, as a transport sees it: what to subscribe to, and where to hand what it reads."""

    instrument_ids: tuple[str, ...]
    depth: int
    heartbeat_timeout: float
    stats: SubscriberStats
    problem: str | None
    source: str

    @property
    def instruments(self) -> dict[str, InstrumentSpec]: ...

    def take_listing(self, specs: Sequence[InstrumentSpec], source: str, depths: dict[str, int]) -> None: ...

    def stream_opened(self) -> None: ...

    def stream_batch(self, session_id: str, messages: Sequence[pb.BookMessage]) -> None: ...

    def instrument_message(self, instrument_id: str, session_id: str, data: bytes) -> None: ...

    def link_lost(self, reason: str) -> None: ...

    def link_back(self) -> None: ...

    def check_silence(self, busy_for: float, where: str) -> None: ...

    def wants_listing(self) -> bool: ...


class Transport(Protocol):
    """One way to reach a feed (see the module docstring)."""

    @property
    def address(self) -> str: ...

    async def list_instruments(self, timeout: float) -> list[InstrumentSpec]: ...  # noqa: ASYNC109 (a deadline)

    async def stream(self, books: BookPort) -> None: ...

    async def fetch_snapshot(self, request: pb.SnapshotRequest) -> pb.BookMessage: ...
