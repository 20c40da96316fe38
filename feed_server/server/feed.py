"""The feed, composed (:class:`Feed`, given :class:`FeedOptions`): the source and engine, the feed core, the
MarketData service and the gRPC health service on one grpc.aio server, and optionally the NATS publisher and the
Prometheus metrics endpoint.

A broken feed says so. The :class:`Feed` watches its engine: if the engine task dies of an exception, the
engine ends every stream with ``UNAVAILABLE`` and a message naming the failure (new Subscribe and GetSnapshot
calls get the same), and the server's watcher reports ``NOT_SERVING`` on the health service (for ``""`` and
``marketdata.v1.MarketData``). :func:`serve` returns when either a signal comes or the engine fails, and says
which, so ``python -m feed_server`` exits non-zero after a failure.

It also serves gRPC server reflection (``grpc.reflection.v1alpha.ServerReflection``) for the MarketData and
health services and itself, so ``grpcurl -plaintext HOST:PORT list`` and ``describe`` work without the proto.

Stopping: :meth:`Feed.stop` closes the fan-out first (every stream ends normally, and a Subscribe or
GetSnapshot arriving while the server stops gets ``UNAVAILABLE``), then reports ``NOT_SERVING``, then stops the
gRPC server.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from feed_server.defaults import DEFAULT_PORT
from feed_server.protocol.core import log_core
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec
from feed_server.protocol.pb import market_data_pb2_grpc
from feed_server.server.engine import DEFAULT_IDLE_STEP_S, Engine
from feed_server.server.fanout import DEFAULT_MAX_BACKLOG
from feed_server.server.faults import FAULT_KINDS, FaultInjector
from feed_server.server.metrics import MetricsServer
from feed_server.server.nats_publisher import NatsPublisher
from feed_server.server.service import MarketDataServicer
from feed_server.server.sources import EventSource

__all__ = [
    "MAX_CONCURRENT_RPCS",
    "MAX_RECEIVE_MESSAGE_BYTES",
    "REFLECTED_SERVICES",
    "SERVICE_NAME",
    "Feed",
    "FeedOptions",
    "serve",
]

logger = logging.getLogger(__name__)

SERVICE_NAME = "marketdata.v1.MarketData"
MAX_RECEIVE_MESSAGE_BYTES = 1024 * 1024
MAX_CONCURRENT_RPCS = 1000
REFLECTED_SERVICES = (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
"""The services that server reflection lists (``grpcurl -plaintext HOST:PORT list``)."""

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


@dataclass(frozen=True)
class FeedOptions:
    """What a :class:`Feed` runs and where it serves it.

    ``metrics_port``: also serve Prometheus ``/metrics`` on ``host`` and that port (0: any free port; None: no
    metrics). ``source`` replaces the simulation (``seed``, ``rate`` and ``instruments`` are then unused).
    ``publish_url``: also publish on that NATS server. ``crash_after_events`` is for tests only: the engine fails
    on purpose after that many events."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    seed: int = 1
    rate: float = 50.0
    instruments: Iterable[InstrumentSpec] = DEFAULT_INSTRUMENTS
    source: EventSource | None = None
    max_backlog: int = DEFAULT_MAX_BACKLOG
    fault_rate: float = 0.0
    fault_kinds: Iterable[str] = FAULT_KINDS
    idle_step_s: float = DEFAULT_IDLE_STEP_S
    max_concurrent_rpcs: int = MAX_CONCURRENT_RPCS
    crash_after_events: int | None = None
    metrics_port: int | None = None
    publish_url: str | None = None


class Feed:
    """The whole feed, composed: source, engine, feed core, gRPC service, and optionally the NATS publisher and
    the metrics endpoint. ``await start()``, then ``await stop()``."""

    def __init__(self, options: FeedOptions | None = None) -> None:
        """``options``: what to run and where (:class:`FeedOptions`; its defaults: the simulation on
        127.0.0.1:DEFAULT_PORT)."""
        options = options if options is not None else FeedOptions()
        self.options = options
        self.host = options.host
        self.port = options.port
        self.seed = options.seed
        self.rate = options.rate
        self.fault_rate = options.fault_rate
        self.fault_kinds = frozenset(options.fault_kinds)
        self._engine = Engine(
            options.instruments,
            seed=options.seed,
            rate=options.rate,
            source=options.source,
            max_backlog=options.max_backlog,
            idle_step_s=options.idle_step_s,
            crash_after_events=options.crash_after_events,
        )
        self._max_concurrent_rpcs = options.max_concurrent_rpcs
        self.metrics_port = options.metrics_port  # the bound port once started
        self._metrics: MetricsServer | None = None
        self.publish_url = options.publish_url
        self.publisher: NatsPublisher | None = None
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        self._watcher: asyncio.Task[None] | None = None  # reports the engine's failure (see _watch_engine)
        self._broken = asyncio.Event()  # set once the engine failed and the health service says NOT_SERVING

    @property
    def engine(self) -> Engine:
        """The engine, whose ``fanout`` holds the subscriptions."""
        return self._engine

    @property
    def session_id(self) -> str:
        """The current session's id (a random uuid hex), sent on every stream item: one per run of the
        simulation; a replay starts a new one at each pass."""
        return self._engine.fanout.session_id

    @property
    def address(self) -> str:
        """``"HOST:PORT"`` to connect to (the bound port once started)."""
        return f"{self.host}:{self.port}"

    @property
    def failure(self) -> str | None:
        """Why the feed is broken (its engine failed), or None while it is not."""
        return self._engine.failure_reason

    async def wait_failure(self) -> str:
        """Wait until the engine has failed and the health service reports NOT_SERVING; returns why."""
        await self._broken.wait()
        return self.failure or "the feed's engine failed"

    async def start(self) -> int:
        """Bind, start the simulation and serve; returns the bound port (useful with port 0).

        Raises OSError (one line naming the address) when nothing can listen on ``host:port`` or, with metrics,
        on ``host:metrics_port``; with ``publish_url``, BusUnavailable when the NATS server cannot be reached and
        DuplicateInstrument when another feed publishes one of these instruments there already."""
        if self._server is not None:
            raise RuntimeError("server already started")
        _check_can_listen(self.host, self.port)
        if self.publish_url is not None:
            self.publisher = NatsPublisher(
                self.publish_url,
                self._engine.core,
                FaultInjector(self.fault_rate, self.fault_kinds, self.seed) if self.fault_rate > 0 else None,
            )
        if self.metrics_port is not None:
            self._metrics = MetricsServer(self._engine, self.host, self.metrics_port, self.publisher)
            self.metrics_port = self._metrics.start()
        try:
            if self.publisher is not None:
                await self.publisher.start()
            return await self._start_grpc()
        except BaseException:
            await self._stop_publisher()
            await self._stop_metrics()
            raise

    async def _start_grpc(self) -> int:
        """The rest of :meth:`start`: the gRPC server, the engine, health SERVING, the engine's watcher."""
        server = grpc.aio.server(options=_SERVER_OPTIONS, maximum_concurrent_rpcs=self._max_concurrent_rpcs)
        servicer = MarketDataServicer(
            self._engine.core, fault_rate=self.fault_rate, fault_kinds=self.fault_kinds, fault_seed=self.seed
        )
        market_data_pb2_grpc.add_MarketDataServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)  # type: ignore[no-untyped-call]
        reflection.enable_server_reflection(REFLECTED_SERVICES, server)
        try:
            port: int = server.add_insecure_port(f"{self.host}:{self.port}")
        except RuntimeError:  # grpcio's "Failed to bind to address" (the port was taken since the check)
            port = 0
        if port == 0:
            raise OSError(f"cannot listen on {self.host}:{self.port}")
        self.port = port
        if self.fault_rate > 0:
            logger.warning(
                "FAULT INJECTION ON: %.2f%% of each subscriber's messages get one of %s",
                self.fault_rate * 100,
                ",".join(sorted(self.fault_kinds)),
            )
        if self._engine.crash_after_events is not None:
            logger.warning(
                "TEST HOOK ON: the engine will fail on purpose after %d events", self._engine.crash_after_events
            )
        self._engine.start()
        await server.start()
        self._server = server
        self._health = health_servicer
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        # Started after SERVING is set, so NOT_SERVING is the last word even if the engine failed already.
        self._watcher = asyncio.create_task(self._watch_engine(health_servicer), name="feed-engine-watcher")
        logger.info(
            "feed server %s listening on %s: %s, %d instruments",
            self.session_id,
            self.address,
            self._engine.source.description,
            len(self._engine.specs),
        )
        log_core()
        return port

    async def _watch_engine(self, health_servicer: health.aio.HealthServicer) -> None:
        """The one task that reports the engine's failure: NOT_SERVING, then wakes wait_failure().

        The engine has already ended every stream with the failure's reason (feed_server.server.engine)."""
        await self._engine.failed.wait()
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self._broken.set()

    async def stop(self, grace: float = 1.0) -> None:
        """End every stream and refuse new ones, report NOT_SERVING, stop the simulation and the server.

        The fan-out closes first, before the gRPC server stops accepting calls: a Subscribe or GetSnapshot that
        arrives meanwhile ends with UNAVAILABLE, never with a snapshot and then silence. Idempotent."""
        server, self._server = self._server, None
        await self._stop_publisher()
        await self._engine.close()  # closes the fan-out before its first await; open streams end normally
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.wait([watcher])  # our own cancellation still propagates
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
            self._health = None
        if server is not None:
            await server.stop(grace)
            logger.info("feed server %s stopped", self.session_id)
        await self._stop_metrics()

    async def _stop_publisher(self) -> None:
        publisher, self.publisher = self.publisher, None
        if publisher is not None:
            await publisher.stop()

    async def _stop_metrics(self) -> None:
        metrics, self._metrics = self._metrics, None
        if metrics is not None:
            await metrics.stop()


def _check_can_listen(host: str, port: int) -> None:
    """Raise OSError naming the address when no socket can be bound to it (a port another process listens on,
    an address this machine does not have), before grpcio tries: its core would log lines of its own."""
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpcio does
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                error = error or exc
            else:
                return  # grpcio listens when at least one of the addresses can be bound
    reason = error.strerror if error is not None and error.strerror else "no address to bind"
    raise OSError(f"cannot listen on {host}:{port}: {reason}")


async def serve(**kwargs: Any) -> str | None:
    """Run a Feed (``Feed(FeedOptions(**kwargs))``) until SIGINT or SIGTERM, or until its engine fails; then stop
    it. Returns None after a signal, and the failure's reason after a failure (already logged by the engine)."""
    server = Feed(FeedOptions(**kwargs))
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled.set)
    try:
        await server.start()
        waits = [
            asyncio.create_task(signalled.wait(), name="feed-signal"),
            asyncio.create_task(server.wait_failure(), name="feed-failure"),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.wait(waits)
        failure = server.failure
        if failure is not None:
            logger.info("the feed is broken, stopping")
        else:
            logger.info("signal received, stopping")
        return failure
    finally:
        await server.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
