"""Ticks and lots as people and JSON read them: exact text, the nearest float, mid and spread, a trade's side.

The one implementation behind the CLI's text (feed_server/client/book_text.py), the dashboard's page
(dashboard/formatting.py) and its JSON (dashboard/api/book_json.py). A price is an integer number of ticks and a
size an integer number of lots; ``FixedPoint`` turns such a multiple of a decimal step into its exact decimal
text with integer arithmetic only (about ten times faster than going through ``Decimal``), and into the float
nearest the exact decimal. ``SpecFormat.of(spec)`` holds an instrument's two, made once per spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache

from feed_server.protocol.book import Side
from feed_server.protocol.instruments import InstrumentSpec, decimals_of

__all__ = ["FixedPoint", "SpecFormat", "aggressor_name", "format_mid", "format_spread"]

_EXACT_INT = 2**53  # every integer of smaller magnitude is exact in a float
_EXACT_DIVISOR = 10**22  # powers of ten below this are exact in a float


@dataclass(frozen=True, slots=True)
class FixedPoint:
    """Integer multiples of a positive decimal step (a tick or a lot): ``units * scale / 10**decimals``.

    ``text`` prints ``decimals`` decimals, trailing zeros trimmed down to ``shown`` (an exchange's units are finer
    than its order filter: a price is shown at the filter's decimals, with more only where it needs them)."""

    scale: int  # the step times 10**decimals, an integer
    decimals: int
    shown: int = -1  # the fewest decimals text() prints (-1: all ``decimals``)
    divisor: int = field(init=False, repr=False, compare=False)  # 10**decimals
    # number() divides two integers exact in a float when abs(units) <= fast_limit (-1: never)
    fast_limit: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        divisor: int = 10**self.decimals
        object.__setattr__(self, "divisor", divisor)
        object.__setattr__(self, "fast_limit", (_EXACT_INT - 1) // self.scale if divisor < _EXACT_DIVISOR else -1)

    @classmethod
    def of(cls, step: Decimal, shown: int = -1) -> FixedPoint:
        decimals = decimals_of(step)
        scale = step.scaleb(decimals)
        if scale != scale.to_integral_value() or scale <= 0:
            raise ValueError(f"not a positive decimal step: {step}")
        return cls(int(scale), decimals, -1 if shown < 0 or shown >= decimals else shown)

    def text(self, units: int) -> str:
        """The exact decimal: ``f"{units * step:.{decimals}f}"`` without Decimal, zeros trimmed down to ``shown``."""
        value = units * self.scale
        if not self.decimals:
            return str(value)
        digits = str(abs(value)).rjust(self.decimals + 1, "0")
        sign = "-" if value < 0 else ""
        fraction = digits[-self.decimals :]
        if self.shown >= 0:
            fraction = fraction.rstrip("0").ljust(self.shown, "0")
            if not fraction:
                return f"{sign}{digits[: -self.decimals]}"
        return f"{sign}{digits[: -self.decimals]}.{fraction}"

    def number(self, units: int) -> float:
        """The float nearest the exact decimal, as ``float(units * step)``.

        Below ``fast_limit`` both integers of ``units * scale / divisor`` are exact in a float and IEEE division
        rounds correctly; beyond it (huge values only) the exact decimal is converted.
        """
        if -self.fast_limit <= units <= self.fast_limit:
            return units * self.scale / self.divisor
        return float(Decimal(units * self.scale).scaleb(-self.decimals))


@dataclass(frozen=True, slots=True)
class SpecFormat:
    """One instrument's prices and sizes, and the half ticks a mid price may fall on."""

    price: FixedPoint
    size: FixedPoint
    half_price: FixedPoint

    @staticmethod
    @lru_cache(maxsize=256)
    def of(spec: InstrumentSpec) -> SpecFormat:
        tick, shown = spec.tick_size, spec.shown_price_decimals
        return SpecFormat(
            FixedPoint.of(tick, shown),
            FixedPoint.of(spec.lot_size, spec.shown_size_decimals),
            FixedPoint.of(tick / 2, shown),
        )


def format_mid(spec: InstrumentSpec, best_bid: int | None, best_ask: int | None) -> str:
    """The exact mid price ("-" without both sides); between two ticks, with the decimals of half a tick.

    That is one more decimal than the tick's (0.01 -> 189.505, 0.25 -> 5875.125), or as many when the tick's
    last digit is even (0.2 -> 0.3).
    """
    if best_bid is None or best_ask is None:
        return "-"
    fmt = SpecFormat.of(spec)
    twice = best_bid + best_ask
    return fmt.half_price.text(twice) if twice % 2 else fmt.price.text(twice // 2)


def format_spread(spec: InstrumentSpec, spread_ticks: int | None) -> str:
    """``"0.02 (2 ticks)"``, ``"0.01 (1 tick)"``; "-" without a spread."""
    if spread_ticks is None:
        return "-"
    unit = "tick" if spread_ticks == 1 else "ticks"
    return f"{SpecFormat.of(spec).price.text(spread_ticks)} ({spread_ticks} {unit})"


def aggressor_name(aggressor: Side) -> str:
    """A trade's direction, the side of the incoming order: ``"buy"`` (it lifted an ask) or ``"sell"``."""
    return "buy" if aggressor is Side.BID else "sell"
