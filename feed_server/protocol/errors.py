"""Every exception the product raises on purpose, in one tree, and the project's own status codes.

::

    MarketDataError
    ├── BookError                 a message cannot be applied to a book; the book is left as it was
    │   ├── SequenceGap           the message's sequence is not the next one
    │   ├── ChecksumMismatch      the book after the message does not match the message's checksum
    │   ├── DigestMismatch        the whole book after the message does not match the message's book digest
    │   ├── CrossedBook           the book after the message would have best bid >= best ask
    │   └── InvalidMessage        a malformed message (unknown side, negative size, ...)
    │       └── SnapshotMissing   an update or heartbeat came before any snapshot of its instrument
    ├── RequestError              server side: the feed refuses a request; ``code`` says why (a Code)
    │   ├── NoSuchInstrument      an instrument id the feed does not have (UNKNOWN_INSTRUMENT)
    │   ├── InvalidRequest        a bad depth, a repeated id, too many ids (BAD_REQUEST)
    │   └── FeedStopped           the feed is shutting down or its engine failed (UNAVAILABLE)
    └── FeedError                 client side: talking to a feed failed; ``code`` is the Code, or None
        ├── FeedUnavailable       no feed at the address, or the connection broke or went quiet
        ├── UnknownInstrument     the feed does not know an instrument id (UNKNOWN_INSTRUMENT)
        └── BadRequest            the feed refused the request (BAD_REQUEST)

(The launcher's StartupError is in feed_server.launch, the recordings' BadRecording in feed_server.record.format.)

:class:`Code` is the project's enum of refusal kinds. It is what travels: a NATS reply's error header carries
its value, and the gRPC adapters alone (feed_server.rpc.status) map it to and from a ``grpc.StatusCode``. The
server raises only RequestError, and its adapters end the call with the code's status. The consumer side raises
only FeedError, translated at each transport's boundary, so callers decide on ``code``, never on the message
text.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "BadRequest",
    "BookError",
    "ChecksumMismatch",
    "Code",
    "CrossedBook",
    "DigestMismatch",
    "FeedError",
    "FeedStopped",
    "FeedUnavailable",
    "InvalidMessage",
    "InvalidRequest",
    "MarketDataError",
    "NoSuchInstrument",
    "RequestError",
    "SequenceGap",
    "SnapshotMissing",
    "UnknownInstrument",
    "feed_error",
    "quoted",
]


class Code(StrEnum):
    """Why a feed refused or failed a call, in the project's own terms (whatever the transport)."""

    UNKNOWN_INSTRUMENT = "unknown_instrument"
    """The feed does not have an instrument the request names."""
    BAD_REQUEST = "bad_request"
    """The request is malformed (a depth out of range, a repeated id, too many ids)."""
    REFUSED = "refused"
    """The feed refuses the request for another reason the same request will meet again."""
    UNAUTHENTICATED = "unauthenticated"
    """The call carries no valid credentials."""
    PERMISSION_DENIED = "permission_denied"
    """The credentials do not allow the call."""
    UNSUPPORTED = "unsupported"
    """The server does not offer the call (another server at the address, or an older feed)."""
    UNAVAILABLE = "unavailable"
    """No feed answers, the connection broke, or the feed is shutting down."""
    TIMEOUT = "timeout"
    """The feed did not answer in time."""
    OVERLOADED = "overloaded"
    """The feed or a limit on the way is out of a resource (too many subscriptions, a message too large)."""
    INTERNAL = "internal"
    """The call failed in the server or on the way for another reason (a reset stream, a corrupt frame)."""

    @property
    def permanent(self) -> bool:
        """Whether the same request to the same feed will meet the same answer for a while (retrying cannot heal
        it soon; subscribers still retry it, at their slowest pace)."""
        return self in _PERMANENT


_PERMANENT = frozenset(
    {
        Code.UNKNOWN_INSTRUMENT,
        Code.BAD_REQUEST,
        Code.REFUSED,
        Code.UNAUTHENTICATED,
        Code.PERMISSION_DENIED,
        Code.UNSUPPORTED,
    }
)


QUOTED_LIMIT = 64  # characters of a value an error message quotes; longer ones are cut and their length said


def quoted(value: str, limit: int = QUOTED_LIMIT) -> str:
    """A value as every error message quotes it (an id, a parameter): its repr, cut at ``limit`` characters
    with the full length said (``'AAAA...'... (5000 characters)``), so a huge input never makes a huge message."""
    if len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} characters)"
    return repr(value)


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
    """The feed refuses a request (server side). ``code`` says why; the adapters end the call with it."""

    code = Code.BAD_REQUEST


class NoSuchInstrument(RequestError):
    """The request names an instrument the feed does not have."""

    code = Code.UNKNOWN_INSTRUMENT


class InvalidRequest(RequestError):
    """The request is malformed: a depth out of range, a repeated id, too many ids."""

    code = Code.BAD_REQUEST


class FeedStopped(RequestError):
    """The feed takes no new subscription: it is shutting down, or its engine failed."""

    code = Code.UNAVAILABLE


class FeedError(MarketDataError):
    """Talking to the feed failed (client side).

    ``code`` is the Code of the feed's answer that ended the call, or None when none did (a stream that went
    quiet, a message that does not decode)."""

    def __init__(self, message: str, code: Code | None = None) -> None:
        super().__init__(message)
        self.code = code

    @property
    def permanent(self) -> bool:
        """Whether retrying cannot heal it soon, decided on the code alone (:attr:`Code.permanent`)."""
        return self.code is not None and self.code.permanent


class FeedUnavailable(FeedError):
    """No feed server answers at the address, or the stream broke or went quiet."""


class UnknownInstrument(FeedError):
    """The feed server does not know the instrument id."""


class BadRequest(FeedError):
    """The feed server refused the request as invalid."""


def feed_error(code: Code | None, message: str) -> FeedError:
    """The FeedError a feed's answer with ``code`` is, whatever the transport that carried it."""
    if code is Code.UNKNOWN_INSTRUMENT:
        return UnknownInstrument(message, code)
    if code is Code.BAD_REQUEST:
        return BadRequest(message, code)
    if code in (Code.UNAVAILABLE, Code.TIMEOUT, Code.OVERLOADED):
        return FeedUnavailable(message, code)
    return FeedError(message, code)
