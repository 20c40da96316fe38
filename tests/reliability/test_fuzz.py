"""Generated input (hypothesis) at the HTTP API, the WebSocket and the gRPC request fields.

Against a running feed process and dashboard process (the module fixture ``system``):

- HTTP ``GET /api/book/{id}?...`` with generated ids (long, non-ASCII, percent-encoded, ``../`` tricks, sent as
  the raw request target, so nothing is normalised on the way) and garbage query strings: never a 5xx; under
  ``/api/`` always JSON (a book, or an error with ``code`` and ``message`` and status 400/404);
- WebSocket ``/ws/market_data/{id}?...``: a book, or an error message then close code 4400/4404, or a plain
  HTTP refusal of the upgrade (a path no route matches); never a 5xx, never a dropped connection without a code;
- gRPC ``Subscribe`` / ``GetSnapshot`` with generated ids (empty, long, non-ASCII, many) and any uint32 depth:
  only OK, NOT_FOUND or INVALID_ARGUMENT; a request past the 1 MiB receive limit gets RESOURCE_EXHAUSTED.

After each batch both servers still serve a normal request. The numbers of inputs tried are printed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from urllib.parse import quote

import grpc
import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.pb import market_data_pb2_grpc
from tests.reliability.conftest import System

KNOWN = [spec.instrument_id for spec in DEFAULT_INSTRUMENTS]
SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

tried: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def report_counts() -> Iterator[None]:
    yield
    print(f"\nfuzz: inputs tried {dict(tried)}")


# ----------------------------------------------------------------- strategies
tricky_ids = st.one_of(
    st.sampled_from(KNOWN),
    st.text(max_size=40),
    st.text(min_size=200, max_size=3000),
    st.text(alphabet="./%\\?#&=;:@ \x00\t", max_size=30),
    st.sampled_from(
        [
            "",
            "..",
            "../",
            "../../etc/passwd",
            "%2e%2e/%2e%2e",
            "AAPL/../MSFT",
            "AAPL%00",
            "aapl",
            "AAPL ",
            "<script>alert(1)</script>",
            "\u202eLPAA",
            "ÄÖÜ-€",
            "🚀",
            "AAPL/",
            "/AAPL",
        ]
    ),
)
garbage_values = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(
        ["", "10", "0", "100", "101", "-1", "1e3", "0x10", " 5", "5 ", "NaN", "inf", "10.0", "\u0661\u0660", "+7"]
    ),
)
queries = st.dictionaries(
    st.sampled_from(["depth", "interval_ms", "trades", "x", "", "depth[]", "Depth"]), garbage_values, max_size=4
)
encodings = st.sampled_from(["all", "keep-slashes", "raw"])


def target(prefix: str, instrument_id: str, query: dict[str, str], how: str) -> str:
    """The raw request target: the id percent-encoded fully, except '/', or not at all (ASCII made safe)."""
    if how == "all":
        path = quote(instrument_id, safe="")
    elif how == "keep-slashes":
        path = quote(instrument_id, safe="/.%")
    else:  # raw, but a request line cannot carry spaces, control or non-ASCII characters
        path = quote(instrument_id, safe="/.%?#&=;:@\\")
    qs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query.items())
    return f"{prefix}{path}" + (f"?{qs}" if qs else "")


def assert_json_error_or_book(response: httpx.Response, target_text: str) -> None:
    assert response.status_code < 500, f"{target_text} -> {response.status_code}: {response.text[:300]}"
    if response.status_code == 200:
        body = orjson.loads(response.content)
        assert body["type"] == "book" and body["instrument_id"] in KNOWN, target_text
        return
    assert response.status_code in (400, 404), f"{target_text} -> {response.status_code}"
    if response.headers.get("content-type", "").startswith("application/json"):
        body = orjson.loads(response.content)
        if "code" in body:  # our API's errors; FastAPI's own 404 for a path no route matches has "detail"
            assert body["type"] == "error" and body["code"] in {"bad_request", "unknown_instrument"}, body
            assert isinstance(body["message"], str) and "Traceback" not in body["message"]
        else:
            assert "detail" in body, body
    else:
        # A path outside /api/book/ (e.g. a "../" the server resolved) may get the page app's HTML 404.
        assert not response.request.url.raw_path.startswith(b"/api/book/") or response.status_code == 404
        assert "Traceback" not in response.text


def still_serving(system: System) -> None:
    response = httpx.get(f"{system.dashboard.url}/api/book/AAPL?depth=5", timeout=10)
    assert response.status_code == 200 and orjson.loads(response.content)["type"] == "book"
    assert system.feed.poll() is None and system.dashboard.process.poll() is None


# ----------------------------------------------------------------- HTTP
@pytest.fixture(scope="module")
def http(system: System) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.dashboard.url, timeout=10) as client:
        yield client


@SETTINGS
@given(instrument_id=tricky_ids, query=queries, how=encodings)
def test_http_book_never_fails_with_a_server_error(
    system: System, http: httpx.Client, instrument_id: str, query: dict[str, str], how: str
) -> None:
    raw = target("/api/book/", instrument_id, query, how)
    response = http.get("/api/book/x", extensions={"target": raw.encode("ascii")})
    tried["http"] += 1
    assert_json_error_or_book(response, raw)


def test_http_still_serving_after_the_generated_requests(system: System) -> None:
    still_serving(system)


# ----------------------------------------------------------------- WebSocket
@SETTINGS
@given(instrument_id=tricky_ids, query=queries, how=st.sampled_from(["all", "keep-slashes"]))
def test_websocket_answers_with_a_book_or_a_coded_error(
    system: System, instrument_id: str, query: dict[str, str], how: str
) -> None:
    uri = system.dashboard.ws_url + target("/ws/market_data/", instrument_id, query, how)
    tried["websocket"] += 1
    try:
        with connect(uri, open_timeout=10, close_timeout=5, max_size=2**22) as ws:
            first = orjson.loads(ws.recv(timeout=10))
            if first["type"] == "book":
                assert first["instrument_id"] in KNOWN
                return
            assert first["type"] == "error", first
            expected = {"bad_request": 4400, "unknown_instrument": 4404}
            assert first["code"] in expected, first
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
            assert ws.close_code == expected[first["code"]], (uri, ws.close_code)
    except InvalidStatus as exc:  # the upgrade was refused: no WebSocket route for this path
        assert exc.response.status_code in (403, 404), (uri, exc.response.status_code)


def test_websocket_still_serving_after_the_generated_requests(system: System) -> None:
    still_serving(system)
    with connect(f"{system.dashboard.ws_url}/ws/market_data/MSFT", open_timeout=10) as ws:
        assert orjson.loads(ws.recv(timeout=10))["type"] == "book"


# ----------------------------------------------------------------- gRPC
@pytest.fixture(scope="module")
def stub(system: System) -> Iterator[market_data_pb2_grpc.MarketDataStub]:
    with grpc.insecure_channel(system.feed_address) as channel:
        yield market_data_pb2_grpc.MarketDataStub(channel)


ALLOWED = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}
uint32 = st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 120))
id_lists = st.one_of(
    st.lists(tricky_ids, max_size=6),
    st.lists(st.sampled_from(KNOWN), max_size=8),
    st.lists(st.text(max_size=5), min_size=95, max_size=130),
)


@SETTINGS
@given(ids=id_lists, depth=uint32)
def test_grpc_subscribe_is_ok_or_not_found_or_invalid_argument(
    stub: market_data_pb2_grpc.MarketDataStub, ids: list[str], depth: int
) -> None:
    tried["grpc subscribe"] += 1
    call = stub.Subscribe(pb.SubscribeRequest(instrument_ids=ids, depth=depth), timeout=10)
    try:
        first = next(call)
        assert first.session_id and first.messages, "a stream starts with snapshots"
        assert 0 <= depth <= 100
        assert all(m.instrument_id in KNOWN for m in first.messages)
    except grpc.RpcError as exc:
        assert exc.code() in ALLOWED, (ids[:3], depth, exc.code(), exc.details())
        assert exc.details(), "the status message names the bad value"
    finally:
        call.cancel()


@SETTINGS
@given(instrument_id=tricky_ids, depth=uint32)
def test_grpc_get_snapshot_is_ok_or_not_found_or_invalid_argument(
    stub: market_data_pb2_grpc.MarketDataStub, instrument_id: str, depth: int
) -> None:
    tried["grpc snapshot"] += 1
    try:
        reply = stub.GetSnapshot(pb.SnapshotRequest(instrument_id=instrument_id, depth=depth), timeout=10)
    except grpc.RpcError as exc:
        assert exc.code() in ALLOWED, (instrument_id[:50], depth, exc.code(), exc.details())
    else:
        assert reply.instrument_id == instrument_id and instrument_id in KNOWN and depth <= 100
        assert reply.HasField("snapshot")


def test_grpc_requests_past_the_size_limit_are_refused_and_the_server_keeps_serving(
    system: System, stub: market_data_pb2_grpc.MarketDataStub
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetSnapshot(pb.SnapshotRequest(instrument_id="A" * (2 << 20)), timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    tried["grpc oversize"] += 1
    reply = stub.ListInstruments(pb.ListInstrumentsRequest(), timeout=10)
    assert [i.instrument_id for i in reply.instruments] == KNOWN
    still_serving(system)
