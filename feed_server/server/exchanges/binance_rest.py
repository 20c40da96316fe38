"""Binance spot's REST side: the symbols' metadata (``/api/v3/exchangeInfo``) and depth snapshots
(``/api/v3/depth?limit=1000``), every request within the address's weight budget (:mod:`.rest_budget`).

Units. A symbol's tick and lot are the wire's units: ``10**-quoteAssetPrecision`` (``quotePrecision`` on older
answers) and ``10**-baseAssetPrecision``, the decimals Binance prints its prices and quantities with, so that
every value of a real book fits exactly. The order filters (``PRICE_FILTER.tickSize``, ``LOT_SIZE.stepSize``)
are kept as the spec's ``order_tick_size`` / ``order_lot_size``: real books break them (a level of 11979.3 where
today's step is 1), so they are metadata, never units.

Requests go one after another (a FIFO lock held until the answer, so that a request is counted when it is sent,
never queued behind others and sent in a burst) and each waits until the budget has room; a 429 or 418 holds them
all until ``Retry-After``. The caller hears of a wait (``on_wait``) so that it can show its book as waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from feed_server.pacing import Throttle
from feed_server.protocol.instruments import InstrumentSpec, decimals_of
from feed_server.server.exchanges.adapter import SourceUnavailable, unit_of
from feed_server.server.exchanges.rest_budget import (
    DEPTH_1000_WEIGHT,
    EXCHANGE_INFO_WEIGHT,
    WeightBudget,
    parse_rate_limits,
)

__all__ = ["BUDGET_WAIT", "DEFAULT_PRECISION", "SNAPSHOT_LIMIT", "BinanceRest", "spec_from_info"]

logger = logging.getLogger(__name__)

SNAPSHOT_LIMIT = 1000
DEFAULT_PRECISION = 8  # the decimals Binance prints, for an answer without its precision fields
BUDGET_WAIT = "waiting for a REST snapshot (weight budget)"


def _filter_step(filters: list[Any], filter_type: str, key: str, symbol: str) -> Decimal | None:
    for item in filters:
        if isinstance(item, dict) and item.get("filterType") == filter_type:
            try:
                step = Decimal(str(item[key])).normalize()
            except (KeyError, InvalidOperation):
                logger.warning("binance %s: bad %s.%s in exchangeInfo; ignored", symbol, filter_type, key)
                return None
            if not step.is_finite() or step <= 0:
                return None
            # normalize() turns "10.00" into 1E+1; keep it a plain number
            return step.quantize(Decimal(1)) if step == step.to_integral_value() else step
    return None


def _precision(info: dict[str, Any], keys: tuple[str, ...], symbol: str) -> int:
    for key in keys:
        value = info.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value <= 18:
                raise SourceUnavailable(f"binance: {symbol}: {key} is {value} in exchangeInfo")
            return value
    return DEFAULT_PRECISION


def spec_from_info(symbol: str, info: dict[str, Any]) -> InstrumentSpec:
    """One exchangeInfo ``symbols`` entry as a spec (see the module docstring); SourceUnavailable if unusable.

    A filter with more decimals than the precision (never seen) makes the unit finer, so that it fits too."""
    filters = info.get("filters") or []
    base, quote = info.get("baseAsset"), info.get("quoteAsset")
    if not isinstance(base, str) or not isinstance(quote, str) or not isinstance(filters, list):
        raise SourceUnavailable(f"binance: {symbol}: exchangeInfo has no baseAsset/quoteAsset/filters")
    tick = _filter_step(filters, "PRICE_FILTER", "tickSize", symbol)
    step = _filter_step(filters, "LOT_SIZE", "stepSize", symbol)
    price_decimals = _precision(info, ("quoteAssetPrecision", "quotePrecision"), symbol)
    size_decimals = _precision(info, ("baseAssetPrecision",), symbol)
    return InstrumentSpec(
        f"{base}-{quote}",
        f"{base} / {quote} (Binance)",
        "crypto",
        unit_of(max(price_decimals, decimals_of(tick) if tick is not None else 0)),
        unit_of(max(size_decimals, decimals_of(step) if step is not None else 0)),
        order_tick_size=tick,
        order_lot_size=step,
    )


class _Waiter:
    """One queued request's ``on_wait``, called at most once."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[str], None] | None) -> None:
        self.callback = callback

    def notify(self, reason: str) -> None:
        if self.callback is not None:
            callback, self.callback = self.callback, None
            callback(reason)


class BinanceRest:
    """The REST requests of one adapter, within one :class:`WeightBudget`."""

    def __init__(self, base_url: str, budget: WeightBudget) -> None:
        self.base_url = base_url.rstrip("/")
        self.budget = budget
        self._lock = asyncio.Lock()
        self._queue: list[_Waiter] = []  # the requests waiting for the lock, in order
        self._throttle = Throttle(10.0)

    async def get(
        self,
        http: httpx.AsyncClient,
        path: str,
        params: dict[str, str],
        weight: int,
        on_wait: Callable[[str], None] | None = None,
    ) -> httpx.Response:
        """One GET once the budget has room; httpx errors raise.

        ``on_wait(reason)`` is called once if this request has to wait for the budget (or a 429/418 hold): at
        once if it must, or as soon as the request ahead of it in the queue starts waiting."""
        budget = self.budget
        waiter = _Waiter(on_wait)
        self._queue.append(waiter)
        if budget.delay(weight) > 0:
            self._notify()
        try:
            async with self._lock:  # one request at a time: each is counted when it is sent, never in a burst
                self._queue.remove(waiter)
                while (delay := budget.delay(weight)) > 0:  # the budget is the clock: nothing to signal
                    waiter.notify(self._wait_reason())
                    self._notify()
                    await asyncio.sleep(delay)
                budget.spend(weight)
                response = await http.get(f"{self.base_url}{path}", params=params)
                budget.observe(response.status_code, response.headers)
        finally:
            if waiter in self._queue:
                self._queue.remove(waiter)
        if response.status_code in (418, 429):
            held = self._throttle.allow("held")
            if held is not None:
                logger.warning("binance: %s%s", budget.held_reason, held.suffix("such answers"))
        return response

    def _notify(self) -> None:
        """The requests queued: they wait for the budget too."""
        reason = self._wait_reason()
        for waiter in self._queue:
            waiter.notify(reason)

    def _wait_reason(self) -> str:
        return f"{BUDGET_WAIT}: {self.budget.held_reason}" if self.budget.holding() else BUDGET_WAIT

    async def exchange_info(self, http: httpx.AsyncClient, symbols: list[str]) -> dict[str, dict[str, Any]]:
        """symbol -> its exchangeInfo entry, the budget set from its ``rateLimits``; SourceUnavailable (one line)."""
        listed = json.dumps(symbols, separators=(",", ":"))
        data = await self._exchange_info(http, {"symbols": listed}, ",".join(symbols), symbols)
        self.budget.set_limits(parse_rate_limits(data.get("rateLimits")))
        return {s["symbol"]: s for s in data.get("symbols", []) if isinstance(s, dict) and "symbol" in s}

    async def _exchange_info(
        self, http: httpx.AsyncClient, params: dict[str, str], what: str, symbols: list[str]
    ) -> dict[str, Any]:
        url = f"{self.base_url}/api/v3/exchangeInfo"
        try:
            response = await self.get(http, "/api/v3/exchangeInfo", params, EXCHANGE_INFO_WEIGHT)
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"binance: cannot reach {url}: {exc!r}") from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code == 400 and isinstance(data, dict) and data.get("code") == -1121:
            if "symbols" in params and len(symbols) > 1:
                for symbol in symbols:  # name the one Binance does not know
                    await self._exchange_info(http, {"symbol": symbol}, symbol, [symbol])
            raise SourceUnavailable(f"binance: unknown symbol {what} ({data.get('msg')} code -1121 from {url})")
        if response.status_code in (418, 429):
            raise SourceUnavailable(f"binance: {url}: {self.budget.held_reason}")
        if response.status_code != 200 or not isinstance(data, dict):
            raise SourceUnavailable(f"binance: {url} answered HTTP {response.status_code} for {what}")
        return data

    async def depth(self, http: httpx.AsyncClient, symbol: str, on_wait: Callable[[str], None]) -> httpx.Response:
        """``/api/v3/depth?symbol=...&limit=1000`` within the budget (raises httpx.HTTPStatusError unless 200)."""
        response = await self.get(
            http, "/api/v3/depth", {"symbol": symbol, "limit": str(SNAPSHOT_LIMIT)}, DEPTH_1000_WEIGHT, on_wait
        )
        response.raise_for_status()
        return response
