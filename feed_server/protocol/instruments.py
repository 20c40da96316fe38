"""Instrument definitions: ids, tick and lot sizes, and the simulator's default universe.

Prices are integer ticks and sizes integer lots everywhere; feed_server/protocol/units.py turns them into text
and numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = ["DEFAULT_INSTRUMENTS", "InstrumentSpec", "decimals_of"]


def decimals_of(step: Decimal) -> int:
    """How many decimals print a multiple of ``step`` exactly (0.01 -> 2, 0.5 -> 1, 5 -> 0)."""
    exponent = step.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """One instrument: its contract (tick and lot size) and the simulator's parameters for it.

    ``tick_size`` and ``lot_size`` are the units of the wire: every price is an integer number of ticks and every
    size of lots. For an exchange they hold every value the exchange can print (its price and quantity
    precision), which is finer than its order filters. ``order_tick_size`` and ``order_lot_size`` are those
    filters (the price increment and quantity step new orders must follow today): metadata for people, never a
    unit, since resting levels may be off them; None means the same as the unit.

    ``start_price`` is in price units; ``volatility`` is the annualised-looking relative volatility used by
    the simulator's random walk per simulated second; ``mean_order_lots`` is the typical resting order size.
    """

    instrument_id: str
    display_name: str
    kind: str
    tick_size: Decimal
    lot_size: Decimal
    start_price: Decimal = Decimal(0)
    volatility: float = 0.0005
    mean_order_lots: int = 10
    order_tick_size: Decimal | None = None
    order_lot_size: Decimal | None = None

    @property
    def price_decimals(self) -> int:
        """Decimals that print every price exactly (those of the tick)."""
        return decimals_of(self.tick_size)

    @property
    def size_decimals(self) -> int:
        """Decimals that print every size exactly (those of the lot)."""
        return decimals_of(self.lot_size)

    @property
    def price_filter(self) -> Decimal:
        """The order filter's price increment (the tick itself when the instrument has no other)."""
        return self.tick_size if self.order_tick_size is None else self.order_tick_size

    @property
    def size_filter(self) -> Decimal:
        """The order filter's quantity step (the lot itself when the instrument has no other)."""
        return self.lot_size if self.order_lot_size is None else self.order_lot_size

    @property
    def shown_price_decimals(self) -> int:
        """The decimals a price is shown with at least (the filter's); more only where a value needs them."""
        return min(decimals_of(self.price_filter), self.price_decimals)

    @property
    def shown_size_decimals(self) -> int:
        """The decimals a size is shown with at least (the filter's); more only where a value needs them."""
        return min(decimals_of(self.size_filter), self.size_decimals)

    @property
    def start_price_ticks(self) -> int:
        return int(self.start_price / self.tick_size)


DEFAULT_INSTRUMENTS: tuple[InstrumentSpec, ...] = (
    InstrumentSpec("AAPL", "Apple Inc.", "equity", Decimal("0.01"), Decimal("1"), Decimal("189.50"), 0.0004, 50),
    InstrumentSpec("MSFT", "Microsoft Corp.", "equity", Decimal("0.01"), Decimal("1"), Decimal("412.30"), 0.0004, 30),
    InstrumentSpec(
        "EUR-USD", "Euro / US Dollar", "fx", Decimal("0.00001"), Decimal("1000"), Decimal("1.08450"), 0.0001, 200
    ),
    InstrumentSpec(
        "USD-JPY", "US Dollar / Japanese Yen", "fx", Decimal("0.001"), Decimal("1000"), Decimal("151.250"), 0.0001, 200
    ),
    InstrumentSpec(
        "BTC-USD", "Bitcoin / US Dollar", "crypto", Decimal("0.5"), Decimal("0.0001"), Decimal("67250.0"), 0.0008, 2000
    ),
    InstrumentSpec(
        "ETH-USD", "Ether / US Dollar", "crypto", Decimal("0.01"), Decimal("0.001"), Decimal("3480.25"), 0.001, 1500
    ),
    InstrumentSpec(
        "ES-Z6", "E-mini S&P 500 Dec 2026", "future", Decimal("0.25"), Decimal("1"), Decimal("5875.00"), 0.0003, 15
    ),
)
