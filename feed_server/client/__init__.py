"""The consumer library: verified order books of a feed, for scripts, the CLI and the dashboard.

The public API (the README's "Scripts in Python" teaches it)::

    from feed_server.client import connect, FeedError, FeedUnavailable, UnknownInstrument

    async with connect("127.0.0.1:50051", instruments=["BTC-USD"], depth=10) as feed:  # or "nats://HOST:PORT"
        await feed.wait_live(timeout=10.0)
        book = feed.book("BTC-USD")          # Book: .bids .asks (Decimal pairs, best first) .mid .live ...
        async for update in feed.updates():  # every verified message, in order per instrument
            ...

Every name in ``__all__`` is the public API, guarded by tests/client/test_public_api.py. The modules behind it:
``feed`` (connect, Feed, the bounded updates), ``views`` (Instrument, Book, Trade, Update), ``keeper`` (the
subscriber core: books, listeners, live state), ``roster`` (its instruments), ``reconnect`` (its never-give-up
connection loop), ``sync`` (the per-instrument sync state machine, pure), the transports ``grpc_transport``
and ``nats_transport``, ``addresses`` (an address picks its transport),
``resync``, ``rpc``, ``health``, ``book_text`` and ``cli`` (``python -m feed_server.client``).
"""

from feed_server.client.feed import Feed, connect
from feed_server.client.views import Book, Instrument, Trade, Update
from feed_server.protocol.errors import BadRequest, Code, FeedError, FeedUnavailable, UnknownInstrument

__all__ = [
    "BadRequest",
    "Book",
    "Code",
    "Feed",
    "FeedError",
    "FeedUnavailable",
    "Instrument",
    "Trade",
    "UnknownInstrument",
    "Update",
    "connect",
]
