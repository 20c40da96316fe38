"""The page's pure formatting: exact prices and sizes, cumulative sizes, mid, trades and depth points."""

from __future__ import annotations

from collections import deque

from dashboard.formatting import (
    depth_series,
    format_last_trade,
    format_time_ns,
    instrument_label,
    level_rows,
    trade_rows,
)
from feed_server.protocol.book import Side, Trade
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS

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
