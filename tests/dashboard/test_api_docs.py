"""The JSON API's OpenAPI description (``/openapi.json``) and Swagger UI (``/docs``) on a real dashboard process."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from dashboard.api.fanout import CLOSE_BAD_REQUEST, CLOSE_TRY_AGAIN_LATER, CLOSE_UNKNOWN_INSTRUMENT
from dashboard.api.limits import ApiLimits
from dashboard.api.params import MAX_INTERVAL_MS
from feed_server.protocol.book import MAX_DEPTH
from tests.dashboard.conftest import Dashboard

ERRORS = {"400": "bad_request", "404": "unknown_instrument", "503": "feed_unavailable"}


@pytest.fixture(scope="module")
def openapi(dashboard: Dashboard) -> dict[str, Any]:
    response = httpx.get(f"{dashboard.http}/openapi.json", timeout=15.0)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    schema: dict[str, Any] = response.json()
    return schema


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """``node`` with its ``$ref`` followed (one level)."""
    ref = node.get("$ref")
    if ref is None:
        return node
    target: dict[str, Any] = schema
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return target


def test_openapi_lists_the_two_rest_paths_and_nothing_of_nicegui(openapi: dict[str, Any]) -> None:
    assert set(openapi["paths"]) == {"/api/instruments", "/api/book/{instrument_id}"}
    assert openapi["info"]["title"] and openapi["info"]["version"]


def test_the_description_covers_the_websocket_and_points_to_the_readme(openapi: dict[str, Any]) -> None:
    description = openapi["info"]["description"]
    assert "/ws/market_data/{instrument_id}" in description
    assert "The JSON API for scripts" in description
    for word in ("interval_ms", "trades", "4404", "4400", "1013"):
        assert word in description, word


def test_the_websocket_contract_takes_its_numbers_from_the_constants_that_enforce_them(
    openapi: dict[str, Any],
) -> None:
    description = openapi["info"]["description"]
    limits = ApiLimits()
    for text in (
        f"1..{MAX_DEPTH}",
        f"0..{MAX_INTERVAL_MS}",
        f"`unknown_instrument` {CLOSE_UNKNOWN_INSTRUMENT}",
        f"`bad_request` {CLOSE_BAD_REQUEST}",
        f"`too_many_connections` {CLOSE_TRY_AGAIN_LATER}",
        f"more than {limits.max_connections} clients",
        f"last {limits.trade_buffer} trade messages",
        f"over {limits.send_timeout:g} s",
    ):
        assert text in description, text


def test_the_book_path_documents_its_parameters_and_responses(openapi: dict[str, Any]) -> None:
    operation = openapi["paths"]["/api/book/{instrument_id}"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert parameters["instrument_id"]["in"] == "path" and parameters["instrument_id"]["required"]
    depth = parameters["depth"]
    assert depth["in"] == "query" and not depth["required"]
    assert depth["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}
    responses = operation["responses"]
    assert set(responses) == {"200", *ERRORS}
    book = resolve(openapi, responses["200"]["content"]["application/json"]["schema"])
    assert set(book["properties"]) == {
        "type", "instrument_id", "sequence", "timestamp_ns", "bids", "asks", "checksum", "stale", "reason"
    }
    for status, code in ERRORS.items():
        content = responses[status]["content"]["application/json"]
        error = resolve(openapi, content["schema"])
        assert set(error["properties"]) == {"type", "code", "message"}
        assert content["example"]["code"] == code and content["example"]["type"] == "error"


def test_the_instruments_path_documents_its_list_and_503(openapi: dict[str, Any]) -> None:
    responses = openapi["paths"]["/api/instruments"]["get"]["responses"]
    assert set(responses) == {"200", "503"}
    listed = responses["200"]["content"]["application/json"]["schema"]
    assert listed["type"] == "array"
    item = resolve(openapi, listed["items"])
    assert set(item["properties"]) == {
        "instrument_id", "name", "kind", "tick_size", "lot_size", "price_decimals", "size_decimals",
        "order_tick_size", "order_lot_size",
    }
    assert responses["503"]["content"]["application/json"]["example"]["code"] == "feed_unavailable"


def test_the_documented_error_body_is_the_one_served(dashboard: Dashboard, openapi: dict[str, Any]) -> None:
    for path, status in (("/api/book/NOPE", 404), ("/api/book/AAPL?depth=0", 400), ("/api/book/AAPL?depth=101", 400)):
        response = httpx.get(dashboard.http + path, timeout=15.0)
        assert response.status_code == status, path
        body = response.json()
        assert set(body) == {"type", "code", "message"} and body["code"] == ERRORS[str(status)]


def test_docs_serves_swagger_ui(dashboard: Dashboard) -> None:
    response = httpx.get(f"{dashboard.http}/docs", timeout=15.0)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in response.text and "/openapi.json" in response.text
