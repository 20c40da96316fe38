"""``--source``: which exchange adapter plays the feed, built from the command line's flags."""

from __future__ import annotations

from collections.abc import Sequence

from feed_server.server.exchanges.adapter import ExchangeAdapter, SourceUnavailable
from feed_server.server.exchanges.live_source import LiveSource

__all__ = ["EXCHANGES", "SIMULATOR", "make_adapter", "open_live_source"]

SIMULATOR = "simulator"
EXCHANGES = ("binance", "kraken")


def make_adapter(
    name: str, symbols: Sequence[str], source_url: str | None = None, rest_url: str | None = None
) -> ExchangeAdapter:
    """The adapter of exchange ``name`` for ``symbols``, at the exchange's public endpoints unless given."""
    if name == "binance":
        from feed_server.server.exchanges.binance import DEFAULT_REST_URL, DEFAULT_WS_URL, BinanceAdapter

        return BinanceAdapter(list(symbols), source_url or DEFAULT_WS_URL, rest_url or DEFAULT_REST_URL)
    if name == "kraken":
        from feed_server.server.exchanges.kraken import DEFAULT_URL, KrakenAdapter

        if rest_url is not None:
            raise ValueError("--source-rest-url applies to --source binance only")
        return KrakenAdapter(list(symbols), source_url or DEFAULT_URL)
    raise ValueError(f"unknown source {name!r} (choose from {SIMULATOR}, {', '.join(EXCHANGES)})")


async def open_live_source(adapter: ExchangeAdapter) -> LiveSource:
    """The adapter's instruments, read from the exchange, as a source: SourceUnavailable (one line) if it cannot."""
    specs = await adapter.instruments()
    if not specs:
        raise SourceUnavailable(f"{adapter.name}: no instrument")
    return LiveSource(adapter, specs)
