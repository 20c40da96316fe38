"""Instruments on the wire: the units as plain decimal strings, the order filters beside them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.wire import instrument_from_pb, instrument_to_pb

NKN = InstrumentSpec(
    "NKN-USDT", "NKN / USDT (Binance)", "crypto", Decimal("1E-8"), Decimal("1E-8"),
    order_tick_size=Decimal("0.0001"), order_lot_size=Decimal("1"),
)  # fmt: skip


def test_an_exchange_instrument_carries_units_and_filters_as_plain_decimals() -> None:
    message = instrument_to_pb(NKN)
    assert (message.tick_size, message.lot_size) == ("0.00000001", "0.00000001")  # never "1E-8"
    assert (message.order_tick_size, message.order_lot_size) == ("0.0001", "1")
    assert (message.price_decimals, message.size_decimals) == (8, 8)
    back = instrument_from_pb(message)
    assert (back.tick_size, back.lot_size, back.order_tick_size, back.order_lot_size) == (
        NKN.tick_size, NKN.lot_size, Decimal("0.0001"), Decimal("1"),
    )  # fmt: skip
    assert (back.shown_price_decimals, back.shown_size_decimals) == (4, 0)


@pytest.mark.parametrize("spec", DEFAULT_INSTRUMENTS, ids=lambda spec: spec.instrument_id)
def test_the_simulators_filters_are_its_units(spec: InstrumentSpec) -> None:
    message = instrument_to_pb(spec)
    assert (message.order_tick_size, message.order_lot_size) == (message.tick_size, message.lot_size)
    back = instrument_from_pb(message)
    assert (back.price_filter, back.size_filter) == (spec.tick_size, spec.lot_size)


def test_an_older_server_without_filters_reads_as_the_units() -> None:
    back = instrument_from_pb(pb.Instrument(instrument_id="X", tick_size="0.01", lot_size="1"))
    assert (back.order_tick_size, back.order_lot_size) == (None, None)
    assert (back.price_filter, back.size_filter) == (Decimal("0.01"), Decimal("1"))


def test_a_bad_filter_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="order filter 'abc'"):
        instrument_from_pb(pb.Instrument(instrument_id="X", tick_size="0.01", lot_size="1", order_tick_size="abc"))
    with pytest.raises(ValueError, match="must be positive"):
        instrument_from_pb(pb.Instrument(instrument_id="X", tick_size="0.01", lot_size="1", order_lot_size="-1"))
