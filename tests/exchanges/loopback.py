"""What the fake exchanges share: a ``websockets`` server on 127.0.0.1 answering both HTTP and WebSocket, and
its addresses."""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import Server


class LoopbackServer:
    """A mixin for a fake exchange that keeps its server in ``_server`` (None until started)."""

    _server: Server | None

    @property
    def port(self) -> int:
        assert self._server is not None, "the fake exchange is not started"
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close_server(self) -> None:
        """Close the server and wait (bounded) until every connection handler has ended."""
        if self._server is not None:
            self._server.close()
            async with asyncio.timeout(5):
                await self._server.wait_closed()
