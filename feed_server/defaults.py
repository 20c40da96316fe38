"""The product's defaults that more than one entry point shares, named once (the README's options tables say them).

- ``DEFAULT_PORT`` (50051): the feed server's gRPC port, and the port of ``DEFAULT_FEED_ADDRESS``, where every
  consumer (the CLI, the dashboard, the recorder, ``feed_server.client.connect``) looks for a feed by default.
- Depths, one per interface: the wire's and the library's default (``depth`` 0 in a request, ``connect()``'s
  ``depth``) is feed_server.protocol.book.DEFAULT_DEPTH (20), part of the protocol; ``DEFAULT_VIEW_DEPTH`` (10)
  is what a person looks at: the CLI's ``--depth`` and the dashboard's WebSocket and REST ``depth`` parameter;
  the recorder records feed_server.protocol.book.MAX_DEPTH (100).
"""

from __future__ import annotations

__all__ = ["DEFAULT_FEED_ADDRESS", "DEFAULT_PORT", "DEFAULT_VIEW_DEPTH"]

DEFAULT_PORT = 50051
DEFAULT_FEED_ADDRESS = f"127.0.0.1:{DEFAULT_PORT}"
DEFAULT_VIEW_DEPTH = 10
