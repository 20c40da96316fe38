"""The JSON API's OpenAPI description: ``/docs`` (Swagger UI) and ``/openapi.json`` on the dashboard's port.

The handlers in routes.py keep returning their pre-encoded JSON bytes; the pydantic models here only describe
those bodies in the schema (nothing is validated or encoded with them). The WebSocket
``/ws/market_data/{instrument_id}`` cannot be described by OpenAPI: :data:`DESCRIPTION` does it in words, and
is the one place its contract is written down (its numbers come from the constants that enforce them).
NiceGUI creates its app with the docs switched off and hides its own routes from the schema (``ui.run``'s
``endpoint_documentation="none"``); :func:`document_api` switches the docs on for the JSON API alone.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field

from dashboard.api.fanout import CLOSE_BAD_REQUEST, CLOSE_TRY_AGAIN_LATER, CLOSE_UNKNOWN_INSTRUMENT
from dashboard.api.limits import ApiLimits
from dashboard.api.params import MAX_INTERVAL_MS
from feed_server.defaults import DEFAULT_VIEW_DEPTH
from feed_server.protocol.book import MAX_DEPTH

__all__ = ["BOOK_ROUTE", "DESCRIPTION", "INSTRUMENTS_ROUTE", "document_api"]

TITLE = "Market data dashboard: JSON API"
VERSION = "1"
_LIMITS = ApiLimits()  # the defaults; DASHBOARD_* variables may change them (dashboard/api/limits.py)
README_SECTION = "README.md, section \"The JSON API for scripts\" (#the-json-api-for-scripts)"

DESCRIPTION = f"""
Books and trades of the feed's instruments as JSON, on the dashboard's own port. A worked example that verifies
every checksum: {README_SECTION}.

**REST** (below): `GET /api/instruments` and `GET /api/book/{{instrument_id}}?depth=N`.

**WebSocket** (OpenAPI cannot describe it; this is its contract):
`ws://HOST:PORT/ws/market_data/{{instrument_id}}?depth={DEFAULT_VIEW_DEPTH}&interval_ms=0&trades=0`

- `depth`: levels per side, 1..{MAX_DEPTH} (default {DEFAULT_VIEW_DEPTH}); `interval_ms`: the least time between two
  flushes, 0..{MAX_INTERVAL_MS} (default 0: every change); `trades`: 1/0 or true/false (default 0): also send a
  `{{"type": "trade", ...}}` message per trade, in the same flush as the next book (so never more often than
  `interval_ms`). Other parameters are ignored; frames a client sends are read and ignored.
- On connect one full book message (the same JSON as `GET /api/book/{{instrument_id}}`), then one whenever the
  levels, the `stale` flag or the `reason` change (a heartbeat alone, which only moves the sequence on, sends
  nothing), at most once per `interval_ms`. Books are conflated per client: a slow client gets the latest
  book, never a backlog.
- A trade message: `{{"type": "trade", "instrument_id", "sequence", "timestamp_ns", "price", "size",
  "aggressor": "buy" | "sell"}}` (the aggressor is the side of the incoming order: `buy` lifted an ask). Each
  client buffers the last {_LIMITS.trade_buffer} trade messages of its instrument (`DASHBOARD_TRADE_BUFFER`); a
  client further behind skips the older ones.
- Errors: one `{{"type": "error", "code", "message"}}` message, then a close code:
  `unknown_instrument` {CLOSE_UNKNOWN_INSTRUMENT} (also sent to the clients of an instrument that a restarted
  feed no longer lists), `bad_request` {CLOSE_BAD_REQUEST} (the message names the parameter and its value),
  `too_many_connections` {CLOSE_TRY_AGAIN_LATER} (more than {_LIMITS.max_connections} clients at once,
  `DASHBOARD_MAX_CONNECTIONS`), `feed_unavailable` {CLOSE_TRY_AGAIN_LATER} (the feed has not listed its
  instruments within {_LIMITS.instrument_wait:g} s).
- A client whose flush stays blocked for over {_LIMITS.send_timeout:g} s (`DASHBOARD_SEND_TIMEOUT`) does not
  read, so no message or close frame could reach it: its connection is aborted (a TCP reset) and the dashboard
  logs `dropped a slow WebSocket client`. Each client holds at most one book, its trade buffer and a
  {_LIMITS.socket_send_buffer // 1024} KiB kernel send buffer.

Operations: `GET /metrics` (Prometheus text format) is on the same port, outside this schema.
"""


class Instrument(BaseModel):
    """One instrument the feed lists."""

    instrument_id: str = Field(examples=["AAPL"])
    name: str = Field(description="display name", examples=["Apple Inc."])
    kind: str = Field(description="equity, fx, crypto or future", examples=["equity"])
    tick_size: float = Field(description="the price unit (every price is a multiple of it), as a JSON number",
                             examples=[0.01])
    lot_size: float = Field(description="the size unit (every size is a multiple of it), as a JSON number",
                            examples=[1.0])
    price_decimals: int = Field(description="decimals that show a price exactly", examples=[2])
    size_decimals: int = Field(description="decimals that show a size exactly", examples=[0])
    order_tick_size: float = Field(
        description="the exchange's order filter for prices (new orders' increment; resting levels may be off it); "
        "the tick size for the simulator",
        examples=[0.01],
    )
    order_lot_size: float = Field(
        description="the exchange's order filter for sizes (new orders' step); the lot size for the simulator",
        examples=[1.0],
    )


class Book(BaseModel):
    """A book: the same JSON as a WebSocket book message."""

    type: Literal["book"]
    instrument_id: str = Field(examples=["AAPL"])
    sequence: int | None = Field(
        description="the feed's sequence number of the last message applied (null before the first snapshot)",
        examples=[1234],
    )
    timestamp_ns: int | None = Field(
        description="the feed's event time of that message, nanoseconds since the Unix epoch",
        examples=[1763780000000000000],
    )
    bids: list[tuple[float, float]] = Field(
        description="[price, size] pairs, best (highest) first", examples=[[[189.5, 300.0], [189.49, 120.0]]]
    )
    asks: list[tuple[float, float]] = Field(description="[price, size] pairs, best (lowest) first",
                                            examples=[[[189.51, 100.0]]])
    checksum: int | None = Field(
        description="the feed's CRC32 of the top 10 levels per side after that message (null before the first "
        "snapshot)",
        examples=[3735928559],
    )
    stale: bool = Field(
        description="true while the book cannot be trusted (a gap or corruption being repaired, the feed "
        "connection lost): the levels are then the last verified ones"
    )
    reason: str | None = Field(description="null while live; else one line saying why the book is not live")


class Error(BaseModel):
    """An error body."""

    type: Literal["error"]
    code: str = Field(description="bad_request, unknown_instrument or feed_unavailable")
    message: str = Field(description="one line for a person")


def _error(description: str, code: str, message: str) -> dict[str, Any]:
    example = {"type": "error", "code": code, "message": message}
    return {"model": Error, "description": description, "content": {"application/json": {"example": example}}}


_UNAVAILABLE = _error(
    "feed_unavailable: the feed has not listed its instruments yet (or has no book for it yet)",
    "feed_unavailable",
    "the feed has not listed its instruments yet",
)

INSTRUMENTS_ROUTE: dict[str, Any] = {
    "summary": "The feed's instruments",
    "description": "The instruments in the feed's order; tick and lot size as JSON numbers.",
    "response_model": None,
    "responses": {
        200: {"model": list[Instrument], "description": "the instruments"},
        503: _UNAVAILABLE,
    },
}
"""Keyword arguments of the ``GET /api/instruments`` route (its OpenAPI description)."""

BOOK_ROUTE: dict[str, Any] = {
    "summary": "One instrument's book",
    "description": "The book as the dashboard holds it now, `depth` levels per side.",
    "response_model": None,
    "responses": {
        200: {"model": Book, "description": "the book (check `stale` before using it as live)"},
        400: _error("bad_request: a parameter out of range", "bad_request",
                    "depth must be an integer from 1 to 100, got '0'"),
        404: _error("unknown_instrument: the feed has no such instrument", "unknown_instrument",
                    "unknown instrument id 'NOPE'"),
        503: _UNAVAILABLE,
    },
    # Parsed by the handler itself (a bad value is a 400 bad_request, never FastAPI's 422): documented only.
    # (A path/query parameter in the handler's signature would make FastAPI document a 422 that never comes.)
    "openapi_extra": {
        "parameters": [
            {"name": "instrument_id", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "an instrument id from `GET /api/instruments`"},
            {
                "name": "depth",
                "in": "query",
                "required": False,
                "description": f"levels per side, 1..{MAX_DEPTH}",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_DEPTH, "default": DEFAULT_VIEW_DEPTH},
            }
        ]
    },
}
"""Keyword arguments of the ``GET /api/book/{instrument_id}`` route (its OpenAPI description)."""


def document_api(app: FastAPI) -> None:
    """Serve ``/docs`` (Swagger UI) and ``/openapi.json`` on ``app`` with the JSON API's title and description.

    Call it once per build of the app, before it serves (NiceGUI's test fixture removes the routes between
    tests; the URLs stay set, so each build adds them again)."""
    app.title = TITLE
    app.version = VERSION
    app.description = DESCRIPTION
    app.docs_url = "/docs"
    app.openapi_url = "/openapi.json"
    app.redoc_url = None
    app.openapi_schema = None
    app.setup()
