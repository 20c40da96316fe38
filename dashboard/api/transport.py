"""The uvicorn transport under a WebSocket, for the two things ASGI cannot express.

The API caps the kernel's send buffer of each connection (``limit_send_buffer``: loopback auto-tuning would
otherwise let a client that does not read hold megabytes), and aborts the connection of such a client
(``abort``: a close frame could never be written to it). ``TransportMiddleware`` finds the transport and records it
in the connection's scope; without it (another server) both are no-ops.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any, Protocol, cast

from fastapi import WebSocket
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["TRANSPORT_SCOPE_KEY", "TransportMiddleware", "abort", "limit_send_buffer"]

TRANSPORT_SCOPE_KEY = "dashboard.transport"


class TransportMiddleware:
    """Pure ASGI middleware: records a WebSocket connection's asyncio transport in its scope.

    uvicorn hands the app its protocol's own ``send`` and ``receive`` (bound methods of the protocol, which holds
    the transport); Starlette wraps them further in. A middleware outside this one may have wrapped ``send``
    already (the SessionMiddleware NiceGUI adds for ``storage_secret`` does), so ``receive`` is looked at too.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            transport = getattr(getattr(send, "__self__", None), "transport", None) or getattr(
                getattr(receive, "__self__", None), "transport", None
            )
            if transport is not None:  # asyncio's or uvloop's (which does not subclass asyncio's classes)
                scope[TRANSPORT_SCOPE_KEY] = transport
        await self.app(scope, receive, send)


class _Transport(Protocol):
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...

    def abort(self) -> None: ...


def _transport(ws: WebSocket) -> _Transport | None:
    """The connection's transport (asyncio's or uvloop's), when TransportMiddleware could find it."""
    transport = ws.scope.get(TRANSPORT_SCOPE_KEY)
    if callable(getattr(transport, "get_extra_info", None)) and callable(getattr(transport, "abort", None)):
        return cast(_Transport, transport)
    return None


def limit_send_buffer(ws: WebSocket, size: int) -> None:
    """Cap the kernel's send buffer of the connection (loopback auto-tuning would otherwise allow megabytes)."""
    transport = _transport(ws)
    sock = None if transport is None else transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def abort(ws: WebSocket) -> None:
    """Abort the connection's transport: a client that does not read would otherwise hold it forever."""
    transport = _transport(ws)
    if transport is not None:
        transport.abort()
