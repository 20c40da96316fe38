"""The consumer side of the feed, used by the CLI and the dashboard; it never imports the server side.

``sync`` (the per-instrument sync state machine, pure), ``keeper`` (BookKeeper: the books, listeners and
never-give-up reconnect loop every transport shares), its transport adapters ``subscriber`` (FeedSubscriber,
gRPC) and ``bus_subscriber`` (BusSubscriber, NATS), ``addresses`` (the adapter for an address: ``HOST:PORT`` or
``nats://HOST:PORT``), ``resync`` (the paced snapshot requests of broken instruments), ``rpc`` (channel options,
the calls, gRPC error translation, the instrument list), ``health`` (the gRPC health probe), ``book_text`` (the CLI's
text rendering of a book), ``cli`` (``python -m feed_server.client``).
"""
