"""A TCP proxy on 127.0.0.1 that fails on demand, as a bad network or a faulty middlebox would.

It sits between a client (the dashboard) and a server (the feed) and forwards bytes both ways until told to:

- ``cut()``: close every connection (a FIN each way); new connections are accepted again at once;
- ``reset()``: abort every connection with a TCP RST;
- ``stall(seconds)``: forward nothing for that long (connections stay open; what arrives is held, then sent);
- ``corrupt(seconds, ...)``: flip bytes in the server-to-client direction for that long.

One owner: the proxy keeps every task it starts and cancels them on ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct

__all__ = ["FaultProxy"]

_CHUNK = 65536


class _Pair:
    """One proxied connection: the client's and the server's streams."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server

    def close(self, *, reset: bool = False) -> None:
        for writer in (self.client, self.server):
            sock = writer.get_extra_info("socket")
            if reset and sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()  # with SO_LINGER 0: an RST, not a FIN
            else:
                writer.close()


class FaultProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target_port> (see the module docstring)."""

    def __init__(self, target_port: int, seed: int = 0) -> None:
        self.target_port = target_port
        self.port = 0
        self.connections = 0  # accepted so far
        self.flipped = 0  # bytes corrupted so far
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._pairs: set[_Pair] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stalled_until = 0.0
        self._corrupt_until = 0.0
        self._flip_probability = 0.0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in list(self._pairs):
            pair.close(reset=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()

    # ----------------------------------------------------------------- faults
    def cut(self) -> None:
        for pair in list(self._pairs):
            pair.close()

    def reset(self) -> None:
        for pair in list(self._pairs):
            pair.close(reset=True)

    async def stall(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._stalled_until = loop.time() + seconds
        await asyncio.sleep(seconds)  # the fault lasts this long (the point)

    async def corrupt(self, seconds: float, per_byte: float = 2e-4) -> None:
        """Flip one bit in a server-to-client byte with probability ``per_byte`` per byte, for ``seconds``."""
        loop = asyncio.get_running_loop()
        self._flip_probability = per_byte
        self._corrupt_until = loop.time() + seconds
        await asyncio.sleep(seconds)  # the fault lasts this long (the point)

    # ----------------------------------------------------------------- forwarding
    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5.0):
                server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except (OSError, TimeoutError):
            client_writer.close()
            return
        self.connections += 1
        pair = _Pair(client_writer, server_writer)
        self._pairs.add(pair)
        for reader, writer, downstream in (
            (client_reader, server_writer, False),
            (server_reader, client_writer, True),
        ):
            task = asyncio.create_task(self._pump(pair, reader, writer, downstream))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _flip(self, data: bytes) -> bytes:
        """``data`` with each byte's random bit flipped with probability ``_flip_probability`` (geometric skips)."""
        buffer = bytearray(data)
        rng, p = self._rng, self._flip_probability
        index = int(rng.expovariate(p))
        while index < len(buffer):
            buffer[index] ^= 1 << rng.randrange(8)
            self.flipped += 1
            index += 1 + int(rng.expovariate(p))
        return bytes(buffer)

    async def _pump(
        self, pair: _Pair, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, downstream: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                wait = self._stalled_until - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # a stalled link holds the bytes (the fault)
                if downstream and loop.time() < self._corrupt_until:
                    data = self._flip(data)
                writer.write(data)
                await writer.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            self._pairs.discard(pair)
            pair.close()
