"""The feed server process: the engine, the MarketData service and the gRPC health service on one grpc.aio server."""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from collections.abc import Iterable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec
from feed_server.protocol.pb import market_data_pb2_grpc
from feed_server.server.engine import DEFAULT_IDLE_STEP_S, Engine
from feed_server.server.fanout import DEFAULT_MAX_BACKLOG
from feed_server.server.faults import FAULT_KINDS
from feed_server.server.service import MarketDataServicer

__all__ = ["MAX_CONCURRENT_RPCS", "MAX_RECEIVE_MESSAGE_BYTES", "SERVICE_NAME", "FeedServer", "serve"]

logger = logging.getLogger(__name__)

SERVICE_NAME = "marketdata.v1.MarketData"
MAX_RECEIVE_MESSAGE_BYTES = 1024 * 1024
MAX_CONCURRENT_RPCS = 1000

_SERVER_OPTIONS: Sequence[tuple[str, int]] = (
    ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 3),
    ("grpc.max_connection_idle_ms", 10 * 60_000),
    ("grpc.so_reuseport", 0),
)


class FeedServer:
    """A running simulated feed: ``await start()``, then ``await stop()``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 50051,
        seed: int = 1,
        rate: float = 50.0,
        instruments: Iterable[InstrumentSpec] = DEFAULT_INSTRUMENTS,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        fault_rate: float = 0.0,
        fault_kinds: Iterable[str] = FAULT_KINDS,
        idle_step_s: float = DEFAULT_IDLE_STEP_S,
        max_concurrent_rpcs: int = MAX_CONCURRENT_RPCS,
    ) -> None:
        self.host = host
        self.port = port
        self.seed = seed
        self.rate = rate
        self.fault_rate = fault_rate
        self.fault_kinds = frozenset(fault_kinds)
        self._session_id = uuid.uuid4().hex
        self._engine = Engine(instruments, seed=seed, rate=rate, max_backlog=max_backlog, idle_step_s=idle_step_s)
        self._max_concurrent_rpcs = max_concurrent_rpcs
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None

    @property
    def engine(self) -> Engine:
        """The engine, whose ``fanout`` holds the subscriptions."""
        return self._engine

    @property
    def session_id(self) -> str:
        """This run's id (a random uuid hex), sent on every stream item."""
        return self._session_id

    @property
    def address(self) -> str:
        """``"HOST:PORT"`` to connect to (the bound port once started)."""
        return f"{self.host}:{self.port}"

    async def start(self) -> int:
        """Bind, start the simulation and serve; returns the bound port (useful with port 0)."""
        if self._server is not None:
            raise RuntimeError("server already started")
        server = grpc.aio.server(options=_SERVER_OPTIONS, maximum_concurrent_rpcs=self._max_concurrent_rpcs)
        servicer = MarketDataServicer(
            self._engine.specs.values(),
            self._engine.fanout,
            self._session_id,
            fault_rate=self.fault_rate,
            fault_kinds=self.fault_kinds,
            fault_seed=self.seed,
        )
        market_data_pb2_grpc.add_MarketDataServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)  # type: ignore[no-untyped-call]
        port: int = server.add_insecure_port(f"{self.host}:{self.port}")
        if port == 0:
            raise OSError(f"cannot listen on {self.host}:{self.port}")
        self.port = port
        if self.fault_rate > 0:
            logger.warning(
                "FAULT INJECTION ON: %.2f%% of each subscriber's messages get one of %s",
                self.fault_rate * 100,
                ",".join(sorted(self.fault_kinds)),
            )
        self._engine.start()
        await server.start()
        self._server = server
        self._health = health_servicer
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        logger.info(
            "feed server %s listening on %s (seed %d, rate %g/s, %d instruments)",
            self._session_id,
            self.address,
            self.seed,
            self.rate,
            len(self._engine.specs),
        )
        return port

    async def stop(self, grace: float = 1.0) -> None:
        """Report NOT_SERVING, end every stream, stop the simulation and the server. Idempotent."""
        server, self._server = self._server, None
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
            self._health = None
        await self._engine.close()  # ends every Subscribe stream normally
        if server is not None:
            await server.stop(grace)
            logger.info("feed server %s stopped", self._session_id)


async def serve(**kwargs: object) -> None:
    """Run a FeedServer (``FeedServer(**kwargs)``) until SIGINT or SIGTERM, then stop it cleanly."""
    server = FeedServer(**kwargs)  # type: ignore[arg-type]
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await server.start()
        await stopping.wait()
        logger.info("signal received, stopping")
    finally:
        await server.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
