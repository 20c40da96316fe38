"""The fan-out's refusals: server-side errors from the one tree, never the consumer's."""

from __future__ import annotations

import pytest

from feed_server.protocol.errors import FeedError, InvalidRequest, NoSuchInstrument, RequestError
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.server.engine import Engine


def test_bad_subscriptions_raise_request_errors_with_their_status() -> None:
    fanout = Engine(DEFAULT_INSTRUMENTS[:2], seed=1, rate=50.0).fanout
    with pytest.raises(NoSuchInstrument) as unknown:
        fanout.subscribe(["NOPE"], 10)
    assert unknown.value.status == "NOT_FOUND" and not isinstance(unknown.value, FeedError)
    with pytest.raises(InvalidRequest) as depth:
        fanout.get_snapshot("AAPL", 101)
    assert depth.value.status == "INVALID_ARGUMENT" and "101" in str(depth.value)
    with pytest.raises(RequestError):
        fanout.subscribe(["AAPL", "AAPL"], 10)
    assert fanout.subscriber_count == 0
