"""How a failed connection is told to people: the one-line problem, each book's stale reason, the log text.

Transport-neutral: it reads a FeedError's message and its code (feed_server.protocol.errors.Code), never a
transport's own status.
"""

from __future__ import annotations

from typing import NamedTuple

from feed_server.protocol.errors import FeedError

__all__ = ["Failure", "describe_failure"]


class Failure(NamedTuple):
    """How a failed connection is told: ``text`` what happened, ``problem`` the subscriber's one-line state,
    ``book_reason`` each book's stale reason, and whether retrying cannot heal it soon (``permanent``)."""

    text: str
    problem: str
    book_reason: str
    permanent: bool


def describe_failure(error: Exception, address: str, retry_every: float) -> Failure:
    """The words for a connection that ended with ``error`` (a FeedError, or a bug's exception)."""
    if not isinstance(error, FeedError):  # a bug, most likely to happen again
        text = f"unexpected error reading the feed at {address}: {type(error).__name__}: {error}"
        return Failure(text, f"{text}; reconnecting", f"{text}; reconnecting", False)
    if not error.permanent:
        text = str(error)
        return Failure(text, f"{text}; reconnecting", f"feed connection lost: {text}", False)
    text = str(error) if address in str(error) else f"feed at {address}: {error}"
    code = error.code.value if error.code is not None else "no code"
    text = text if code in text else f"{text} ({code})"
    problem = f"{text}; retrying every {retry_every:g} s"
    return Failure(text, problem, problem, True)
