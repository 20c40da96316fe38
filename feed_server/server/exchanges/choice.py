"""``--source``: which exchange adapter plays the feed, built from the command line's flags."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from feed_server.server.exchanges.adapter import ExchangeAdapter, SourceUnavailable
from feed_server.server.exchanges.live_source import LiveSource

__all__ = ["EXCHANGES", "SIMULATOR", "SourceOptions", "make_adapter", "open_live_source"]

SIMULATOR = "simulator"
EXCHANGES = ("binance", "kraken", "coinbase")


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """The exchange flags beyond the endpoints (``--source-rest-weight-share``, ``--source-renew-after``)."""

    rest_weight_share: float | None = None  # Binance only; None: the default, 0.5
    renew_after: float | None = None  # Binance only; seconds; None: the default, before its 24 h lifetime


def make_adapter(
    name: str,
    symbols: Sequence[str],
    source_url: str | None = None,
    rest_url: str | None = None,
    options: SourceOptions = SourceOptions(),
) -> ExchangeAdapter:
    """The adapter of exchange ``name`` for ``symbols``, at the exchange's public endpoints unless given."""
    for flag, given in (
        ("--source-rest-weight-share", options.rest_weight_share),
        ("--source-renew-after", options.renew_after),
    ):
        if given is not None and name != "binance":
            raise ValueError(f"{flag} applies to --source binance only")
    if name == "binance":
        from feed_server.server.exchanges.binance import (
            DEFAULT_REST_URL,
            DEFAULT_WS_URL,
            RENEW_AFTER_S,
            BinanceAdapter,
        )

        return BinanceAdapter(
            list(symbols),
            source_url or DEFAULT_WS_URL,
            rest_url or DEFAULT_REST_URL,
            weight_share=0.5 if options.rest_weight_share is None else options.rest_weight_share,
            renew_after=RENEW_AFTER_S if options.renew_after is None else options.renew_after,
        )
    if name == "kraken":
        from feed_server.server.exchanges.kraken import DEFAULT_URL, KrakenAdapter

        if rest_url is not None:
            raise ValueError("--source-rest-url applies to --source binance|coinbase only")
        return KrakenAdapter(list(symbols), source_url or DEFAULT_URL)
    if name == "coinbase":
        from feed_server.server.exchanges.coinbase import DEFAULT_REST_URL as CB_REST
        from feed_server.server.exchanges.coinbase import DEFAULT_WS_URL as CB_WS
        from feed_server.server.exchanges.coinbase import CoinbaseAdapter

        return CoinbaseAdapter(list(symbols), source_url or CB_WS, rest_url or CB_REST)
    raise ValueError(f"unknown source {name!r} (choose from {SIMULATOR}, {', '.join(EXCHANGES)})")


async def open_live_source(adapter: ExchangeAdapter) -> LiveSource:
    """The adapter's instruments, read from the exchange, as a source: SourceUnavailable (one line) if it cannot."""
    specs = await adapter.instruments()
    if not specs:
        raise SourceUnavailable(f"{adapter.name}: no instrument")
    return LiveSource(adapter, specs)
