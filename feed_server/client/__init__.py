"""The consumer side of the feed, used by the CLI and the dashboard; it never imports the server side.

``sync`` (the per-instrument sync state machine, pure), ``subscriber`` (the reconnecting FeedSubscriber task),
``rpc`` (channel options, gRPC error translation, the instrument list), ``health`` (the gRPC health probe),
``book_text`` (the CLI's text rendering of a book), ``cli`` (``python -m feed_server.client``).
"""
