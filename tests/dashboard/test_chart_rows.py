"""The charts' price rows for an exchange instrument, whose tick (its printed precision) is finer than its order
filter: rows are whole filter ticks, so their labels read at the filter's decimals."""

from __future__ import annotations

from decimal import Decimal

from dashboard.charts import heatmap_data, price_data
from dashboard.history import DepthSample, InstrumentHistory
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec

NS = 1_000_000_000
NKN = InstrumentSpec(
    "NKN-USDT", "NKN / USDT (Binance)", "crypto", Decimal("0.00000001"), Decimal("0.00000001"),
    order_tick_size=Decimal("0.0001"), order_lot_size=Decimal("1"),
)  # fmt: skip


def test_rows_of_an_exchange_instrument_are_whole_filter_ticks() -> None:
    history = InstrumentHistory(NKN)
    now = 1_700_000_000 * NS
    for i in range(60):  # a mid wandering over 0.3500 .. 0.3560, off the filter at times
        history.mids.append((now - (60 - i) * NS, float(35_000_000 + i * 10_037)))
    data = price_data(history, now)
    assert data.prices, data
    for label in data.prices:
        assert len(label.partition(".")[2]) == 4, data.prices  # 0.3500, 0.3501, ...: the filter's decimals
    steps = {(Decimal(b) - Decimal(a)) for a, b in zip(data.prices, data.prices[1:], strict=False)}
    assert len(steps) == 1 and next(iter(steps)) % Decimal("0.0001") == 0, steps


def test_heatmap_rows_of_an_exchange_instrument_are_whole_filter_ticks() -> None:
    history = InstrumentHistory(NKN)
    now = 1_700_000_000 * NS
    levels = tuple((35_000_000 + i * 3_333, 100 * 10**8) for i in range(40))
    history.depth.append(DepthSample(now - NS, 35_050_000.0, levels))
    data = heatmap_data(history, now)
    assert data.prices and all(len(label.partition(".")[2]) == 4 for label in data.prices), data.prices


def test_a_simulated_instrument_keeps_one_tick_rows() -> None:
    aapl = next(spec for spec in DEFAULT_INSTRUMENTS if spec.instrument_id == "AAPL")
    history = InstrumentHistory(aapl)
    now = 1_700_000_000 * NS
    for i in range(10):
        history.mids.append((now - (10 - i) * NS, float(18_950 + i)))
    labels = price_data(history, now).prices
    assert labels[:3] == ("189.50", "189.51", "189.52"), labels
