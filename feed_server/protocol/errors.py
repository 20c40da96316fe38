"""Every exception the product raises on purpose, in one tree.

::

    MarketDataError
    ├── BookError                 a message cannot be applied to a book; the book is left as it was
    │   ├── SequenceGap           the message's sequence is not the next one
    │   ├── ChecksumMismatch      the book after the message does not match the message's checksum
    │   ├── DigestMismatch        the whole book after the message does not match the message's book digest
    │   ├── CrossedBook           the book after the message would have best bid >= best ask
    │   └── InvalidMessage        a malformed message (unknown side, negative size, ...)
    │       └── SnapshotMissing   an update or heartbeat came before any snapshot of its instrument
    ├── RequestError              server side: the feed refuses a request; ``status`` names the gRPC status
    │   ├── NoSuchInstrument      an instrument id the feed does not have (NOT_FOUND)
    │   ├── InvalidRequest        a bad depth, a repeated id, too many ids (INVALID_ARGUMENT)
    │   └── FeedStopped           the feed is shutting down or its engine failed (UNAVAILABLE)
    ├── FeedError                 client side: talking to a feed server failed; ``code`` is the gRPC status
    │   ├── FeedUnavailable       no server at the address, or the connection broke or went quiet
    │   ├── UnknownInstrument     the server does not know an instrument id (NOT_FOUND)
    │   └── BadRequest            the server refused the request (INVALID_ARGUMENT)
    ├── StartupError              a process the launcher started did not come up (exited, or not ready in time)
    └── BadRecording              a file is not a recording, has an unknown format version, or holds nothing

The server raises only RequestError; the service ends the call with its status. The consumer side raises only
FeedError: feed_server.client.rpc translates a ``grpc.aio.AioRpcError`` into one at the boundary and keeps the
call's status code on it (``code``, a ``grpc.StatusCode``, or None when no status ended the call, such as a
stream that went quiet), so callers decide on the code, never on the message text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc


class MarketDataError(Exception):
    """Base of every error raised on purpose by the product."""


class BookError(MarketDataError):
    """A message could not be applied to a book. The book is left exactly as it was before."""

    def __init__(self, instrument_id: str, sequence: int, message: str) -> None:
        super().__init__(f"{instrument_id} seq {sequence}: {message}")
        self.instrument_id = instrument_id
        self.sequence = sequence


class SequenceGap(BookError):
    """The message's sequence number is not the one after the book's."""

    def __init__(self, instrument_id: str, expected: int, received: int) -> None:
        super().__init__(instrument_id, received, f"sequence gap: expected {expected}, received {received}")
        self.expected = expected
        self.received = received


class _ValueMismatch(BookError):
    """The book after the message does not give the value the message states (``what`` names the value)."""

    what = "value"

    def __init__(self, instrument_id: str, sequence: int, expected: int, computed: int) -> None:
        super().__init__(
            instrument_id, sequence, f"{self.what} mismatch: message says {expected}, book gives {computed}"
        )
        self.expected = expected
        self.computed = computed


class ChecksumMismatch(_ValueMismatch):
    """After applying the message the book's checksum is not the message's."""

    what = "checksum"


class DigestMismatch(_ValueMismatch):
    """After applying the message the digest of the whole book is not the message's ``book_digest``."""

    what = "book digest"


class CrossedBook(BookError):
    """Applying the message would leave best bid >= best ask."""

    def __init__(self, instrument_id: str, sequence: int, best_bid: int, best_ask: int) -> None:
        super().__init__(instrument_id, sequence, f"crossed book: best bid {best_bid} >= best ask {best_ask} (ticks)")
        self.best_bid = best_bid
        self.best_ask = best_ask


class InvalidMessage(BookError):
    """The message itself is malformed."""


class SnapshotMissing(InvalidMessage):
    """An update or heartbeat arrived before any snapshot of its instrument (the snapshot was lost)."""


class RequestError(MarketDataError):
    """The feed refuses a request (server side). ``status`` is the name of the gRPC status to end the call with."""

    status = "INVALID_ARGUMENT"


class NoSuchInstrument(RequestError):
    """The request names an instrument the feed does not have."""

    status = "NOT_FOUND"


class InvalidRequest(RequestError):
    """The request is malformed: a depth out of range, a repeated id, too many ids."""

    status = "INVALID_ARGUMENT"


class FeedStopped(RequestError):
    """The feed takes no new subscription: it is shutting down, or its engine failed."""

    status = "UNAVAILABLE"


class FeedError(MarketDataError):
    """Talking to the feed server failed (client side).

    ``code`` is the ``grpc.StatusCode`` that ended the call, or None when none did (a stream that went quiet)."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class FeedUnavailable(FeedError):
    """No feed server answers at the address, or the stream broke or went quiet."""


class UnknownInstrument(FeedError):
    """The feed server does not know the instrument id."""


class BadRequest(FeedError):
    """The feed server refused the request as invalid."""


class StartupError(MarketDataError):
    """A process started by the launcher (run.py) did not come up: it exited, or was not ready in time."""


class BadRecording(MarketDataError):
    """A file is not a recording (feed_server.record), has a format version this code cannot read, or is empty."""
