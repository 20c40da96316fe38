"""The page's pure formatting: exact prices and sizes, cumulative sizes, mid, trades and depth points."""

from __future__ import annotations

import random
from collections import deque
from decimal import Decimal

import pytest

from dashboard.formatting import (
    FixedPoint,
    SpecFormat,
    depth_series,
    format_last_trade,
    format_mid,
    format_spread,
    format_time_ns,
    instrument_label,
    level_rows,
    trade_rows,
)
from feed_server.protocol.book import Side, Trade
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec

SPECS = {spec.instrument_id: spec for spec in DEFAULT_INSTRUMENTS}


def test_level_rows_format_to_tick_and_lot_with_cumulative_size() -> None:
    eurusd = SPECS["EUR-USD"]  # tick 0.00001, lot 1000
    rows = level_rows(eurusd, [(108450, 3), (108449, 2)])
    assert rows == [
        {"key": 0, "price": "1.08450", "size": "3000", "total": "3000"},
        {"key": 1, "price": "1.08449", "size": "2000", "total": "5000"},
    ]
    btc = SPECS["BTC-USD"]  # tick 0.5, lot 0.0001
    assert level_rows(btc, [(134501, 15)])[0] == {"key": 0, "price": "67250.5", "size": "0.0015", "total": "0.0015"}


def test_mid_gets_one_more_decimal_between_ticks() -> None:
    es = SPECS["ES-Z6"]  # tick 0.25
    assert format_mid(es, 23500, 23502) == "5875.25"
    assert format_mid(es, 23500, 23501) == "5875.125"
    aapl = SPECS["AAPL"]
    assert format_mid(aapl, 18950, 18951) == "189.505"
    assert format_mid(aapl, None, 18951) == "-"


def test_spread_names_its_ticks() -> None:
    aapl = SPECS["AAPL"]
    assert format_spread(aapl, 1) == "0.01 (1 tick)"
    assert format_spread(aapl, 12) == "0.12 (12 ticks)"
    assert format_spread(aapl, None) == "-"


def test_trades_newest_first_and_limited() -> None:
    aapl = SPECS["AAPL"]
    base = 1_700_000_000_000_000_000  # 2023-11-14 22:13:20 UTC
    trades = deque((base + i * 1_000_000, Trade(18950 + i, 10 + i, Side.BID if i % 2 else Side.ASK)) for i in range(5))
    rows = trade_rows(aapl, trades, 3)
    assert [row["price"] for row in rows] == ["189.54", "189.53", "189.52"]
    assert rows[0] == {"key": 0, "time": "22:13:20.004", "price": "189.54", "size": "14", "side": "SELL"}
    assert rows[1]["side"] == "BUY"
    assert format_time_ns(base + 123_456_789) == "22:13:20.123"
    assert format_last_trade(aapl, Trade(18950, 7, Side.BID)) == "7 @ 189.50 BUY"
    assert format_last_trade(aapl, None) == "-"


def test_depth_series_ascending_prices_with_cumulative_sizes() -> None:
    aapl = SPECS["AAPL"]
    bids = depth_series(aapl, [(18950, 5), (18949, 7)], Side.BID)
    asks = depth_series(aapl, [(18951, 4), (18952, 6)], Side.ASK)
    assert bids == [[189.49, 12.0], [189.5, 5.0]]
    assert asks == [[189.51, 4.0], [189.52, 10.0]]


def test_instrument_label_is_id_and_name() -> None:
    assert instrument_label(SPECS["ETH-USD"]) == "ETH-USD - Ether / US Dollar"


@pytest.mark.parametrize("spec", DEFAULT_INSTRUMENTS, ids=lambda spec: spec.instrument_id)
def test_fixed_point_matches_the_specs_decimal_formatting(spec: InstrumentSpec) -> None:
    fmt = SpecFormat.of(spec)
    rng = random.Random(spec.instrument_id)
    values = [0, 1, 5, 9, 10, 99, 100, 12345, -1, -7, *(rng.randrange(-(10**9), 10**9) for _ in range(2000))]
    for units in values:
        assert fmt.price.text(units) == spec.format_price(units), units
        assert fmt.size.text(units) == spec.format_size(units), units
        assert fmt.price.number(units) == spec.price_float(units), units
        assert fmt.size.number(units) == spec.size_float(units), units


def test_fixed_point_refuses_a_step_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="not a positive decimal step"):
        FixedPoint.of(Decimal(0))
    assert FixedPoint.of(Decimal("0.25")) == FixedPoint(25, 2)
    assert FixedPoint.of(Decimal("1000")) == FixedPoint(1000, 0)
