"""The JSON API's routes, bound to one ``MarketDataHub``: the WebSocket and two REST endpoints.

WebSocket ``/ws/market_data/{instrument_id}``: served by ``MarketDataHub.serve`` (fanout.py); its contract is
written in docs.py's ``DESCRIPTION``.

REST: ``GET /api/instruments`` -> ``[{"instrument_id", "name", "kind", "tick_size", "lot_size",
"price_decimals", "size_decimals", "order_tick_size", "order_lot_size"}]``;
``GET /api/book/{instrument_id}?depth=N`` -> a book message (see
book_json.py); errors as JSON with status 400 (bad_request), 404 (unknown_instrument) or 503 (feed_unavailable).
Their OpenAPI description (``/docs``, ``/openapi.json``) is in docs.py.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, WebSocket

from dashboard.api.book_json import encode_error, instruments_json
from dashboard.api.docs import BOOK_ROUTE, INSTRUMENTS_ROUTE
from dashboard.api.fanout import MarketDataHub
from dashboard.api.params import BadParameter, int_param
from feed_server.defaults import DEFAULT_VIEW_DEPTH
from feed_server.protocol.book import MAX_DEPTH
from feed_server.protocol.errors import quoted

__all__ = ["api_router"]


def api_router(hub: MarketDataHub) -> APIRouter:
    """The WebSocket and REST routes, bound to ``hub``."""
    router = APIRouter()

    @router.websocket("/ws/market_data/{instrument_id:path}")
    async def market_data(websocket: WebSocket, instrument_id: str) -> None:
        await hub.serve(websocket, instrument_id)

    @router.get("/api/instruments", **INSTRUMENTS_ROUTE)
    async def instruments() -> Response:
        specs = await hub.known_instruments()
        if not specs:
            return _error_response(503, "feed_unavailable", "the feed has not listed its instruments yet")
        return Response(instruments_json(specs), media_type="application/json")

    @router.get("/api/book/{instrument_id:path}", **BOOK_ROUTE)
    async def book(request: Request) -> Response:
        instrument_id: str = request.path_params["instrument_id"]  # not a parameter: FastAPI would document a 422
        try:
            depth = int_param(request.query_params, "depth", DEFAULT_VIEW_DEPTH, 1, MAX_DEPTH)
        except BadParameter as exc:
            return _error_response(400, "bad_request", str(exc))
        specs = await hub.known_instruments()
        if not specs:
            return _error_response(503, "feed_unavailable", "the feed has not listed its instruments yet")
        if instrument_id not in {s.instrument_id for s in specs}:
            return _error_response(404, "unknown_instrument", f"unknown instrument id {quoted(instrument_id)}")
        data = hub.book_json(instrument_id, depth)
        if data is None:
            return _error_response(503, "feed_unavailable", f"no book for {quoted(instrument_id)} yet")
        return Response(data, media_type="application/json")

    return router


def _error_response(status: int, code: str, message: str) -> Response:
    return Response(encode_error(code, message), status_code=status, media_type="application/json")
