"""Every exception the feed package raises on purpose.

::

    MarketDataError
    ├── BookError                 a message cannot be applied to a book; the book is left as it was
    │   ├── SequenceGap           the message's sequence is not the next one
    │   ├── ChecksumMismatch      the book after the message does not match the message's checksum
    │   ├── CrossedBook           the book after the message would have best bid >= best ask
    │   └── InvalidMessage        a malformed message (unknown side, negative size, ...)
    └── FeedError                 talking to a feed server failed
        ├── FeedUnavailable       no server at the address, or the connection broke
        ├── UnknownInstrument     the server does not know an instrument id (gRPC NOT_FOUND)
        └── BadRequest            the server refused the request (gRPC INVALID_ARGUMENT)

Lower libraries' errors (``grpc.aio.AioRpcError``) are translated into these at the client boundary.
"""

from __future__ import annotations


class MarketDataError(Exception):
    """Base of every error raised on purpose by the feed package."""


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


class ChecksumMismatch(BookError):
    """After applying the message the book's checksum is not the message's."""

    def __init__(self, instrument_id: str, sequence: int, expected: int, computed: int) -> None:
        super().__init__(
            instrument_id, sequence, f"checksum mismatch: message says {expected}, book gives {computed}"
        )
        self.expected = expected
        self.computed = computed


class CrossedBook(BookError):
    """Applying the message would leave best bid >= best ask."""

    def __init__(self, instrument_id: str, sequence: int, best_bid: int, best_ask: int) -> None:
        super().__init__(instrument_id, sequence, f"crossed book: best bid {best_bid} >= best ask {best_ask} (ticks)")
        self.best_bid = best_bid
        self.best_ask = best_ask


class InvalidMessage(BookError):
    """The message itself is malformed."""


class FeedError(MarketDataError):
    """Talking to the feed server failed."""


class FeedUnavailable(FeedError):
    """No feed server answers at the address, or the stream broke."""


class UnknownInstrument(FeedError):
    """The feed server does not know the instrument id."""


class BadRequest(FeedError):
    """The feed server refused the request as invalid."""
