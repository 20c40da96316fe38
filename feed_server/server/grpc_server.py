"""The former home of the feed's composition root, kept so existing imports work: what is imported from here is
feed_server.server.feed's (:class:`~feed_server.server.feed.Feed`, given
:class:`~feed_server.server.feed.FeedOptions`; ``FeedServer`` is its former name, taking the options as keywords).
"""

from __future__ import annotations

from feed_server.server.feed import SERVICE_NAME, FeedServer, serve

__all__ = ["SERVICE_NAME", "FeedServer", "serve"]
