"""The consumer side of the feed, used by the CLI and the dashboard; it never imports the server side.

``sync`` (the per-instrument sync state machine, pure), ``subscriber`` (the FeedSubscriber task, which never
gives up while it runs), ``rpc`` (channel options, the calls, gRPC error translation, the instrument list),
``backoff`` (pacing: the reconnect backoff, per-instrument resync pacing, rate-limited reports), ``health``
(the gRPC health probe), ``book_text`` (the CLI's text rendering of a book), ``cli``
(``python -m feed_server.client``).
"""
