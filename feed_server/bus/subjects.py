"""The NATS contract: subjects, headers and the escaping of instrument ids into subject tokens (pure, no I/O).

- ``marketdata.v1.book.<id>``: every message of one instrument, at full depth, as ``BookMessage`` bytes (the same
  bytes as on gRPC), with the feed's session id in the ``Marketdata-Session`` header; heartbeats included.
- ``marketdata.v1.snapshot.<id>``: request/reply; the request is ``SnapshotRequest`` bytes, the reply a
  ``BookMessage`` snapshot (its ``session_id`` set), or an error: no payload, the project's code
  (feed_server.protocol.errors.Code: ``unknown_instrument``, ``bad_request``, ``unavailable``, ...) in the
  ``Marketdata-Error`` header and its message in ``Marketdata-Error-Message``.
- ``marketdata.v1.instruments``: request/reply; any payload; every feed answers with ``ListInstrumentsResponse``
  bytes (its session in ``Marketdata-Session``), so a requester gathers the answers of all the feeds.

An instrument id becomes one subject token: ASCII letters, digits, ``-`` and ``_`` stay; every other byte of its
UTF-8 form is written ``%XX`` (upper-case hex), so ``.``, spaces, ``*`` and ``>`` never reach the subject and the
escaping can be undone exactly (``BTC/USD`` -> ``BTC%2FUSD``).
"""

from __future__ import annotations

import string

__all__ = [
    "BOOK_PREFIX",
    "ERROR_HEADER",
    "ERROR_MESSAGE_HEADER",
    "INSTRUMENTS_SUBJECT",
    "SESSION_HEADER",
    "SNAPSHOT_PREFIX",
    "book_subject",
    "instrument_of",
    "snapshot_subject",
    "token",
    "untoken",
]

BOOK_PREFIX = "marketdata.v1.book."
SNAPSHOT_PREFIX = "marketdata.v1.snapshot."
INSTRUMENTS_SUBJECT = "marketdata.v1.instruments"
SESSION_HEADER = "Marketdata-Session"
ERROR_HEADER = "Marketdata-Error"
ERROR_MESSAGE_HEADER = "Marketdata-Error-Message"

_KEPT = frozenset((string.ascii_letters + string.digits + "-_").encode())


def token(instrument_id: str) -> str:
    """One subject token for an instrument id (see the module docstring)."""
    return "".join(chr(byte) if byte in _KEPT else f"%{byte:02X}" for byte in instrument_id.encode())


def untoken(text: str) -> str:
    """The instrument id a token stands for (ValueError when it is not a token this module wrote)."""
    out = bytearray()
    i = 0
    raw = text.encode("ascii")
    while i < len(raw):
        if raw[i] == ord("%"):
            out.append(int(raw[i + 1 : i + 3].decode("ascii"), 16))
            i += 3
        elif raw[i] in _KEPT:
            out.append(raw[i])
            i += 1
        else:
            raise ValueError(f"not an escaped instrument id: {text!r}")
    return out.decode()


def book_subject(instrument_id: str) -> str:
    return BOOK_PREFIX + token(instrument_id)


def snapshot_subject(instrument_id: str) -> str:
    return SNAPSHOT_PREFIX + token(instrument_id)


def instrument_of(subject: str, prefix: str = BOOK_PREFIX) -> str:
    """The instrument id of a book (or, with its prefix, a snapshot) subject."""
    if not subject.startswith(prefix):
        raise ValueError(f"not a {prefix}* subject: {subject!r}")
    return untoken(subject[len(prefix) :])
