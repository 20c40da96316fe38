"""The feed's readiness as the standard gRPC health service (``grpc.health.v1``) reports it."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["feed_serving"]


def feed_serving(address: str, timeout: float = 0.5) -> bool:
    """Whether the feed at ``address`` answers its health check with SERVING within ``timeout`` seconds."""
    with grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
