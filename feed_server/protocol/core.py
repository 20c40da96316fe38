"""Which order book a consumer runs: the compiled one or the pure-Python reference, and why.

The consumers' books (the client library, the CLI, the dashboard, the recorder) are made with :data:`OrderBook`:
``feed_server.protocol.compiled_book.OrderBook`` (C++, built by ``pip install -r requirements.txt`` where a
compiler is present) unless it is missing, older than its source, or ``MARKETDATA_PURE_PYTHON=1`` forces the
pure path; else ``feed_server.protocol.book.OrderBook``. Both give the same books, checksums, digests and
refusals (``tests/protocol/test_compiled_book.py`` compares them). :data:`CORE` is ``"compiled"`` or
``"python"``; :func:`describe` is the start-up log line's ``core: compiled`` or ``core: pure Python (<why>)``;
both servers expose ``marketdata_core_info{core=...}``. The feed's own books stay pure Python: its fan-out reads
them through :meth:`~feed_server.protocol.book.OrderBook.key_levels`.

The choice is made once, at import: set the variable before the process starts.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal, Protocol

from feed_server.protocol import book

__all__ = ["CORE", "CORE_REASON", "PURE_PYTHON_ENV", "BookModel", "OrderBook", "describe", "log_core"]

PURE_PYTHON_ENV = "MARKETDATA_PURE_PYTHON"
_SOURCE = Path(__file__).with_name("compiled_book.pyx")


class BookModel(Protocol):
    """What a consumer reads and drives of a book; both implementations have it (see ``book.OrderBook``)."""

    @property
    def instrument_id(self) -> str: ...
    @property
    def depth(self) -> int: ...
    @property
    def checksum_levels(self) -> int: ...

    sequence: int | None

    def best_bid(self) -> book.Level | None: ...
    def best_ask(self) -> book.Level | None: ...
    def spread(self) -> int | None: ...
    def mid(self) -> float | None: ...
    def bids(self, n: int | None = None) -> list[book.Level]: ...
    def asks(self, n: int | None = None) -> list[book.Level]: ...
    def top(self, side: book.Side, n: int | None = None) -> list[book.Level]: ...
    def size_at(self, side: book.Side, price: int) -> int: ...
    def level_count(self, side: book.Side) -> int: ...
    def checksum(self) -> int: ...
    def digest(self) -> int: ...
    def is_crossed(self) -> bool: ...
    def set_level(self, side: book.Side, price: int, size: int) -> None: ...
    def clear(self) -> None: ...
    def apply_snapshot(
        self,
        sequence: int,
        bids: Sequence[book.Level],
        asks: Sequence[book.Level],
        checksum: int | None = None,
        digest: int | None = None,
    ) -> None: ...
    def apply_update(
        self,
        sequence: int,
        changes: Iterable[tuple[int, int, int]],
        checksum: int | None = None,
        digest: int | None = None,
    ) -> int: ...
    def apply_wire_update(
        self,
        sequence: int,
        changes: Iterable[book.WireChange],
        checksum: int | None = None,
        digest: int | None = None,
    ) -> int: ...
    def apply_heartbeat(self, sequence: int, checksum: int | None = None, digest: int | None = None) -> None: ...


BookClass = Callable[[str, int], BookModel]


def source_sha256() -> str | None:
    """The SHA-256 of the compiled book's source in this checkout (None where it is not shipped)."""
    try:
        return hashlib.sha256(_SOURCE.read_bytes()).hexdigest()
    except OSError:
        return None


def _choose() -> tuple[BookClass, str | None]:
    """The book class, and why it is the pure one (None when it is the compiled one)."""
    forced = os.environ.get(PURE_PYTHON_ENV, "")
    if forced not in ("", "0"):
        return book.OrderBook, f"{PURE_PYTHON_ENV}={forced}"
    try:
        from feed_server.protocol import compiled_book
    except ImportError as exc:
        return book.OrderBook, f"the compiled book is not built: {exc}"
    source = source_sha256()
    if source is not None and compiled_book.SOURCE_SHA256 != source:
        return book.OrderBook, "the compiled book is older than its source: run pip install -r requirements.txt"
    return compiled_book.OrderBook, None


OrderBook, CORE_REASON = _choose()
CORE: Literal["compiled", "python"] = "python" if CORE_REASON else "compiled"


def describe() -> str:
    """``compiled`` or ``pure Python (<why>)``: the path this process runs."""
    return "compiled" if CORE_REASON is None else f"pure Python ({CORE_REASON})"


def log_core() -> None:
    """The start-up line naming the path, at INFO: ``core: compiled`` or ``core: pure Python (<why>)``."""
    logging.getLogger(__name__).info("core: %s", describe())
