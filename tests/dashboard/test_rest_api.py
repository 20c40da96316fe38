"""``GET /api/instruments`` and ``GET /api/book/{id}`` against a real dashboard process fed by a real feed."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from feed_server.protocol.checksum import compute_checksum
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from tests.dashboard.conftest import Dashboard

SPECS = {spec.instrument_id: spec for spec in DEFAULT_INSTRUMENTS}


def get(dashboard: Dashboard, path: str) -> httpx.Response:
    return httpx.get(dashboard.http + path, timeout=15.0)


def test_instruments_lists_every_feed_instrument_in_feed_order(dashboard: Dashboard) -> None:
    response = get(dashboard, "/api/instruments")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    listed = response.json()
    assert [item["instrument_id"] for item in listed] == [spec.instrument_id for spec in DEFAULT_INSTRUMENTS]
    for item in listed:
        spec = SPECS[item["instrument_id"]]
        assert item == {
            "instrument_id": spec.instrument_id,
            "name": spec.display_name,
            "kind": spec.kind,
            "tick_size": float(spec.tick_size),
            "lot_size": float(spec.lot_size),
            "price_decimals": spec.price_decimals,
            "size_decimals": spec.size_decimals,
            "order_tick_size": float(spec.tick_size),
            "order_lot_size": float(spec.lot_size),
        }


@pytest.mark.parametrize("depth", [1, 10, 37, 100])
def test_book_is_the_same_json_as_a_book_message(dashboard: Dashboard, depth: int) -> None:
    spec = SPECS["ES-Z6"]
    book = get(dashboard, f"/api/book/ES-Z6?depth={depth}").json()
    assert book["type"] == "book" and book["instrument_id"] == "ES-Z6" and book["stale"] is False
    assert book["reason"] is None
    assert 0 < len(book["bids"]) <= depth and 0 < len(book["asks"]) <= depth
    bids = [(int(Decimal(repr(p)) / spec.tick_size), int(Decimal(repr(s)) / spec.lot_size)) for p, s in book["bids"]]
    asks = [(int(Decimal(repr(p)) / spec.tick_size), int(Decimal(repr(s)) / spec.lot_size)) for p, s in book["asks"]]
    assert bids[0][0] < asks[0][0]
    if depth >= 10:
        assert book["checksum"] == compute_checksum(bids[:10], asks[:10])


def test_default_depth_is_10(dashboard: Dashboard) -> None:
    book = get(dashboard, "/api/book/AAPL").json()
    assert len(book["bids"]) == 10 and len(book["asks"]) == 10


@pytest.mark.parametrize("instrument_id", ["NOPE", "aapl", "x" * 5000, "Ünï€", "AAPL%00", "a/b", "..%2F..%2Fetc"])
def test_unknown_instrument_is_a_json_404(dashboard: Dashboard, instrument_id: str) -> None:
    response = get(dashboard, f"/api/book/{instrument_id}")
    assert response.status_code == 404
    error = response.json()
    assert error["type"] == "error" and error["code"] == "unknown_instrument"
    assert len(error["message"]) < 120


@pytest.mark.parametrize("depth", ["0", "101", "-5", "abc", "1e3", "", "9" * 1000, "%FF"])
def test_bad_depth_is_a_json_400(dashboard: Dashboard, depth: str) -> None:
    response = get(dashboard, f"/api/book/AAPL?depth={depth}")
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["code"] == "bad_request" and "depth" in error["message"]


@pytest.mark.parametrize("query", ["foo=bar", "&&&", "=x", "%zz", "depth=5&depth=6", "a" * 4000])
def test_odd_query_strings_are_never_a_500(dashboard: Dashboard, query: str) -> None:
    response = get(dashboard, f"/api/book/AAPL?{query}")
    assert response.status_code in {200, 400}
    assert response.json()["type"] in {"book", "error"}
