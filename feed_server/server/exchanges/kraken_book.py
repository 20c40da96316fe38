"""One symbol's Kraken WebSocket v2 ``book`` (L2), checked by Kraken's CRC32: pure, no I/O.

Kraken's rules (docs: "Spot WebSocket v2 book checksum"): apply every level of a message (``qty`` 0 removes the
level), then truncate each side to the subscribed depth (Kraken sends no ``qty`` 0 for levels that fall out of
scope), then compare the CRC32 of the top 10 levels with the message's ``checksum``. The checksum text of a
level is its price then its quantity, each printed with the pair's ``price_precision`` / ``qty_precision``
decimals, the decimal point and the leading zeros removed; asks ascending first, then bids descending.

v2 sends prices and quantities as JSON numbers: frames must be decoded with ``json.loads(text,
parse_float=Decimal)`` so that nothing is rounded; a number printed short on the wire (``0.1``) is padded back
to the pair's precision (``0.10000000``) for the checksum.

Any fault (a checksum mismatch, a value off the tick/lot grid, a malformed level) raises :class:`KrakenBookError`
whose text is the stale reason; the book must then be rebuilt from a fresh snapshot (resubscribe).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from feed_server.protocol.levels import Level, LevelChange, Side
from feed_server.server.exchanges.adapter import NotOnGrid, to_units

__all__ = [
    "CHECKSUM_LEVELS",
    "KrakenBook",
    "KrakenBookError",
    "KrakenChecksumMismatch",
    "checksum_text",
    "kraken_checksum",
    "rfc3339_ns",
    "to_decimal",
]

CHECKSUM_LEVELS = 10
"""Kraken's checksum covers the top 10 levels of each side, whatever the subscribed depth."""


class KrakenBookError(ValueError):
    """A book message could not be applied; the text is the reason the symbol is stale."""


class KrakenChecksumMismatch(KrakenBookError):
    """The book after a message does not give the message's checksum."""

    def __init__(self, symbol: str, expected: int, computed: int) -> None:
        super().__init__(f"checksum mismatch on {symbol}: message says {expected}, book gives {computed}")
        self.expected = expected
        self.computed = computed


def to_decimal(value: object, what: str) -> Decimal:
    """A JSON price/qty (a Decimal from ``parse_float=Decimal``, an int, or a decimal string) as an exact Decimal."""
    if isinstance(value, bool):
        raise KrakenBookError(f"{what} {value!r} is not a number")
    if isinstance(value, Decimal | int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise KrakenBookError(f"{what} {value!r} is not a number") from None
    else:
        raise KrakenBookError(f"{what} {value!r} is not a number")
    if not result.is_finite() or result < 0:
        raise KrakenBookError(f"{what} {value!r} is not a non-negative number")
    return result


def checksum_text(value: Decimal, decimals: int | None) -> str:
    """One price or qty as Kraken's checksum prints it: ``decimals`` places, no ``.``, no leading zeros.

    ``decimals`` None keeps the value's own digits (for values given as strings, as in Kraken's example); a value
    with more digits than ``decimals`` keeps them all (it is never rounded)."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if decimals is not None and -exponent < decimals:
        value = value.quantize(Decimal(1).scaleb(-decimals))
    return format(value, "f").replace(".", "").lstrip("0")


def kraken_checksum(
    asks: Iterable[tuple[Decimal, Decimal]],
    bids: Iterable[tuple[Decimal, Decimal]],
    price_decimals: int | None = None,
    qty_decimals: int | None = None,
) -> int:
    """Kraken's CRC32 (unsigned) of a book: ``asks`` ascending and ``bids`` descending, ``(price, qty)``, best first.

    Only the first 10 of each side count."""
    parts: list[str] = []
    for side in (asks, bids):
        for index, (price, qty) in enumerate(side):
            if index >= CHECKSUM_LEVELS:
                break
            parts.append(checksum_text(price, price_decimals))
            parts.append(checksum_text(qty, qty_decimals))
    return binascii.crc32("".join(parts).encode("ascii")) & 0xFFFFFFFF


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|z|[+-]\d\d:\d\d)$")


def rfc3339_ns(text: object) -> int | None:
    """``"2023-10-06T17:35:55.440295Z"`` as integer nanoseconds since the epoch (exact); None if not RFC 3339."""
    if not isinstance(text, str):
        return None
    match = _RFC3339.match(text)
    if match is None:
        return None
    base, fraction, zone = match.groups()
    try:
        moment = datetime.fromisoformat(base + ("+00:00" if zone in ("Z", "z") else zone))
    except ValueError:
        return None
    return int(moment.timestamp()) * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


_Entry = tuple[Decimal, int, int]  # (qty, price ticks, qty lots)


class KrakenBook:
    """The v2 book of one symbol at the subscribed ``depth``, in Kraken's exact decimals.

    ``apply_snapshot`` returns the whole book in ticks and lots (best first per side); ``apply_update`` returns the
    level changes (size 0 removes) that turn the previous book into the new one, truncation included. Both check
    the message's checksum and raise :class:`KrakenBookError` on any fault (the book is then unusable until the
    next snapshot)."""

    def __init__(
        self,
        symbol: str,
        tick: Decimal,
        lot: Decimal,
        depth: int,
        price_decimals: int | None = None,
        qty_decimals: int | None = None,
    ) -> None:
        self.symbol = symbol
        self.tick = tick
        self.lot = lot
        self.depth = depth
        self.price_decimals = price_decimals
        self.qty_decimals = qty_decimals
        # price -> (qty, ticks, lots): the exact values for the checksum, the units for the sink
        self._bids: dict[Decimal, _Entry] = {}
        self._asks: dict[Decimal, _Entry] = {}

    # -- public API -------------------------------------------------------------------------------------------

    def apply_snapshot(self, data: Mapping[str, Any]) -> tuple[list[Level], list[Level]]:
        """A ``snapshot`` element: the book is replaced. Returns ``(bids, asks)`` as ``(ticks, lots)``, best first."""
        bids = self._parse_side(data, "bids")
        asks = self._parse_side(data, "asks")
        self._bids, self._asks = {}, {}
        self._apply(Side.BID, bids)
        self._apply(Side.ASK, asks)
        self._verify(data)
        return self.levels(Side.BID), self.levels(Side.ASK)

    def apply_update(self, data: Mapping[str, Any]) -> list[LevelChange]:
        """An ``update`` element: its levels are applied in order, the book truncated, the checksum checked."""
        bids = self._parse_side(data, "bids")
        asks = self._parse_side(data, "asks")
        before = {Side.BID: self.levels(Side.BID), Side.ASK: self.levels(Side.ASK)}
        self._apply(Side.BID, bids)
        self._apply(Side.ASK, asks)
        self._verify(data)
        changes: list[LevelChange] = []
        for side in (Side.BID, Side.ASK):
            old = dict(before[side])
            new = dict(self.levels(side))
            changes.extend(LevelChange(side, price, 0) for price in old if price not in new)
            changes.extend(LevelChange(side, price, size) for price, size in new.items() if old.get(price) != size)
        return changes

    def levels(self, side: Side) -> list[Level]:
        """One side as ``(ticks, lots)``, best first."""
        book = self._bids if side is Side.BID else self._asks
        prices = sorted(book, reverse=side is Side.BID)
        return [(book[price][1], book[price][2]) for price in prices]

    def checksum(self) -> int:
        return kraken_checksum(self._sorted(Side.ASK), self._sorted(Side.BID), self.price_decimals, self.qty_decimals)

    # -- internals --------------------------------------------------------------------------------------------

    def _sorted(self, side: Side) -> list[tuple[Decimal, Decimal]]:
        book = self._bids if side is Side.BID else self._asks
        return [(price, book[price][0]) for price in sorted(book, reverse=side is Side.BID)]

    def _parse_side(self, data: Mapping[str, Any], key: str) -> list[tuple[Decimal, _Entry]]:
        """The levels of one side, checked: numbers, on the tick and lot grids (before anything is applied)."""
        raw = data.get(key, [])
        if not isinstance(raw, Sequence) or isinstance(raw, str):
            raise KrakenBookError(f"malformed {key} on {self.symbol}: {raw!r:.80}")
        levels: list[tuple[Decimal, _Entry]] = []
        for level in raw:
            if not isinstance(level, Mapping) or "price" not in level or "qty" not in level:
                raise KrakenBookError(f"malformed level in {key} on {self.symbol}: {level!r:.80}")
            price = to_decimal(level["price"], "price")
            qty = to_decimal(level["qty"], "qty")
            try:
                ticks = to_units(str(price), self.tick, "price")
                lots = to_units(str(qty), self.lot, "qty")
            except NotOnGrid as exc:
                raise KrakenBookError(f"{self.symbol}: {exc}") from None
            levels.append((price, (qty, ticks, lots)))
        return levels

    def _apply(self, side: Side, levels: Sequence[tuple[Decimal, _Entry]]) -> None:
        book = self._bids if side is Side.BID else self._asks
        for price, entry in levels:
            if entry[0] == 0:
                book.pop(price, None)
            else:
                book[price] = entry
        if len(book) > self.depth:
            keep = sorted(book, reverse=side is Side.BID)[: self.depth]
            kept = {price: book[price] for price in keep}
            book.clear()
            book.update(kept)

    def _verify(self, data: Mapping[str, Any]) -> None:
        expected = data.get("checksum")
        if isinstance(expected, bool) or not isinstance(expected, int):
            raise KrakenBookError(f"missing or malformed checksum on {self.symbol}: {expected!r:.40}")
        computed = self.checksum()
        if computed != expected:
            raise KrakenChecksumMismatch(self.symbol, expected, computed)
