"""Both order book implementations, for the tests that run against each (as python-websockets runs its utils
tests once per implementation): the pure-Python reference and the compiled one."""

from __future__ import annotations

from feed_server.protocol import book
from feed_server.protocol.core import BookClass

__all__ = ["BOOKS", "COMPILED_MISSING"]

BOOKS: dict[str, BookClass] = {"python": book.OrderBook}
COMPILED_MISSING: str | None = None
try:
    from feed_server.protocol import compiled_book
except ImportError as exc:  # no compiler where the project was installed: tests/test_core.py says whether it should
    COMPILED_MISSING = f"the compiled book is not built: {exc}"
else:
    BOOKS["compiled"] = compiled_book.OrderBook
