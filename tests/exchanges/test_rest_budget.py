"""The REST weight budget, pure: a fake clock, Binance's documented weights and limits."""

from __future__ import annotations

import pytest

from feed_server.server.exchanges.rest_budget import (
    DEPTH_1000_WEIGHT,
    RateLimit,
    WeightBudget,
    parse_rate_limits,
)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def drain(budget: WeightBudget, clock: Clock, requests: int, weight: int) -> list[float]:
    """Send ``requests`` of ``weight`` as soon as the budget lets each go; their times."""
    times: list[float] = []
    for _ in range(requests):
        while (delay := budget.delay(weight)) > 0:
            clock.now += delay
        budget.spend(weight)
        times.append(clock.now)
    return times


def test_rate_limits_are_read_from_exchange_info() -> None:
    raw = [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "FORTNIGHT", "intervalNum": 1, "limit": 1},
        "nonsense",
    ]
    assert parse_rate_limits(raw) == [RateLimit(60, 6000)]
    assert parse_rate_limits(None) == []


def test_300_snapshots_never_pass_half_the_limit_in_any_rolling_minute() -> None:
    clock = Clock()
    budget = WeightBudget(0.5, [RateLimit(60, 6000)], clock)
    assert budget.budgets == {60: 3000}
    times = drain(budget, clock, 300, DEPTH_1000_WEIGHT)
    for start in times:
        in_minute = sum(DEPTH_1000_WEIGHT for t in times if start <= t < start + 60)
        assert in_minute <= 3000, start
    # and it is not needlessly slow: 60 snapshots a minute, so 300 take a little over four minutes
    assert 4 * 60 <= times[-1] - times[0] <= 5.1 * 60


def test_the_exchanges_reported_weight_counts_too() -> None:
    clock = Clock(1_699_999_990.0)  # 10 s into a minute window (1_699_999_980 is a whole minute)
    budget = WeightBudget(0.5, [RateLimit(60, 6000)], clock)
    budget.observe(200, {"x-mbx-used-weight-1m": "2990"})  # another process on the address used most of it
    assert budget.delay(DEPTH_1000_WEIGHT) == pytest.approx(50.0)  # until the exchange's window turns
    clock.now += 50.0
    assert budget.delay(DEPTH_1000_WEIGHT) == 0


def test_429_and_418_hold_every_request_until_retry_after() -> None:
    clock = Clock()
    budget = WeightBudget(0.5, [RateLimit(60, 6000)], clock)
    budget.observe(429, {"Retry-After": "7"})
    assert budget.holding() and budget.delay(1) == pytest.approx(7.0)
    assert "HTTP 429" in budget.held_reason and "7 s" in budget.held_reason
    clock.now += 7.0
    assert not budget.holding() and budget.delay(1) == 0
    budget.observe(418, {})  # a ban without Retry-After: Binance's shortest ban
    assert budget.delay(1) == pytest.approx(120.0) and "418" in budget.held_reason


def test_share_is_checked() -> None:
    with pytest.raises(ValueError, match="share"):
        WeightBudget(0.0)
    with pytest.raises(ValueError, match="share"):
        WeightBudget(1.5)
