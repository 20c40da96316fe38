"""The exchange tests' shared fixture: a fake Kraken (tests/exchanges/fake_kraken.py) seeded with two books."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.exchanges.fake_kraken import FakeKraken
from tests.exchanges.test_kraken import BTC, BTC_DEEP_ASKS, BTC_DEEP_BIDS, ETH, ETH_ASKS, ETH_BIDS


@pytest.fixture
async def kraken_fake() -> AsyncIterator[FakeKraken]:
    """A fake Kraken with BTC/USD (deeper than 10 levels) and ETH/USD, on a free 127.0.0.1 port."""
    server = FakeKraken([BTC, ETH])
    server.seed("BTC/USD", BTC_DEEP_BIDS, BTC_DEEP_ASKS)
    server.seed("ETH/USD", ETH_BIDS, ETH_ASKS)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
