"""The product's defaults that more than one entry point shares, named once (the README's options tables say them).

- ``DEFAULT_PORT`` (50051): the feed server's gRPC port, and the port of ``DEFAULT_FEED_ADDRESS``, where every
  consumer (the CLI, the dashboard, the recorder, ``feed_server.client.connect``) looks for a feed by default.
- Depths are per interface and named where the interface is: the wire's default (``depth`` 0 in a request) is
  feed_server.protocol.book.DEFAULT_DEPTH.
"""

from __future__ import annotations

__all__ = ["DEFAULT_FEED_ADDRESS", "DEFAULT_PORT"]

DEFAULT_PORT = 50051
DEFAULT_FEED_ADDRESS = f"127.0.0.1:{DEFAULT_PORT}"
