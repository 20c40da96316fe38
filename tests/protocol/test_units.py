"""Ticks and lots as text and numbers: the one implementation the CLI, the page and the JSON API share."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec
from feed_server.protocol.levels import Side
from feed_server.protocol.units import FixedPoint, SpecFormat, aggressor_name, format_mid, format_spread

SPECS = {spec.instrument_id: spec for spec in DEFAULT_INSTRUMENTS}


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


@pytest.mark.parametrize("spec", DEFAULT_INSTRUMENTS, ids=lambda spec: spec.instrument_id)
def test_fixed_point_matches_the_specs_decimal_formatting(spec: InstrumentSpec) -> None:
    fmt = SpecFormat.of(spec)
    rng = random.Random(spec.instrument_id)
    values = [0, 1, 5, 9, 10, 99, 100, 12345, -1, -7, *(rng.randrange(-(10**9), 10**9) for _ in range(2000))]
    for units in values:
        assert fmt.price.text(units) == f"{units * spec.tick_size:.{spec.price_decimals}f}", units
        assert fmt.size.text(units) == f"{units * spec.lot_size:.{spec.size_decimals}f}", units
        assert fmt.price.number(units) == float(units * spec.tick_size), units
        assert fmt.size.number(units) == float(units * spec.lot_size), units


def test_fixed_point_refuses_a_step_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="not a positive decimal step"):
        FixedPoint.of(Decimal(0))
    assert FixedPoint.of(Decimal("0.25")) == FixedPoint(25, 2)
    assert FixedPoint.of(Decimal("1000")) == FixedPoint(1000, 0)


def test_the_aggressor_is_named_by_the_incoming_side() -> None:
    assert aggressor_name(Side.BID) == "buy"
    assert aggressor_name(Side.ASK) == "sell"


# -- an exchange's units are finer than its order filter: shown at the filter's decimals, more where needed --

NKN = InstrumentSpec(
    "NKN-USDT",
    "NKN / USDT (Binance)",
    "crypto",
    Decimal("0.00000001"),
    Decimal("0.00000001"),
    order_tick_size=Decimal("0.0001"),
    order_lot_size=Decimal("1"),
)


def test_exchange_values_show_the_filters_decimals_and_more_only_where_needed() -> None:
    fmt = SpecFormat.of(NKN)
    assert fmt.price.text(35_000_000) == "0.3500"  # on the filter: its 4 decimals
    assert fmt.price.text(35_001_000) == "0.35001"  # off it (a resting order of an older filter): what it needs
    assert fmt.size.text(1_197_930_000_000) == "11979.3"  # the level that broke the old feed: exact, not rounded
    assert fmt.size.text(500 * 10**8) == "500"
    assert fmt.size.text(0) == "0"
    assert format_mid(NKN, 35_000_000, 35_000_001) == "0.350000005"  # half a unit: one more decimal
    assert format_spread(NKN, 10_000) == "0.0001 (10000 ticks)"


def test_trimmed_text_is_the_exact_value() -> None:
    fmt = SpecFormat.of(NKN)
    rng = random.Random(5)
    for units in [0, 1, -1, 10**8, -(10**8), *(rng.randrange(-(10**14), 10**14) for _ in range(2000))]:
        price, size = fmt.price.text(units), fmt.size.text(units)
        assert Decimal(price) == units * NKN.tick_size and Decimal(size) == units * NKN.lot_size, units
        assert len(price.partition(".")[2]) >= 4 and (price.partition(".")[2][-1:] != "0" or price.endswith(".0000"))
        assert "e" not in price.lower() and "e" not in size.lower()


def test_a_spec_without_filters_shows_its_units_decimals() -> None:
    aapl = SPECS["AAPL"]
    assert (aapl.price_filter, aapl.size_filter) == (aapl.tick_size, aapl.lot_size)
    assert SpecFormat.of(aapl).price.text(18950) == "189.50"
