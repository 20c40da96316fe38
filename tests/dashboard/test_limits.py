"""The JSON API's limits from ``DASHBOARD_*`` variables (dashboard.api.limits): good values taken, bad ones named."""

from __future__ import annotations

import pytest

from dashboard.api.limits import ApiLimits, BadLimit


def test_defaults_when_unset() -> None:
    assert ApiLimits.from_env({"OTHER": "x"}) == ApiLimits()


def test_good_values_are_taken() -> None:
    env = {"DASHBOARD_MAX_CONNECTIONS": "24", "DASHBOARD_SEND_TIMEOUT": "0.5", "DASHBOARD_TRADE_BUFFER": " 16 "}
    limits = ApiLimits.from_env(env)
    assert (limits.max_connections, limits.send_timeout, limits.trade_buffer) == (24, 0.5, 16)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DASHBOARD_SEND_TIMEOUT", "0"),
        ("DASHBOARD_SEND_TIMEOUT", "-0.5"),
        ("DASHBOARD_SEND_TIMEOUT", "inf"),
        ("DASHBOARD_SEND_TIMEOUT", "1e9"),
        ("DASHBOARD_SEND_TIMEOUT", "5s"),
        ("DASHBOARD_MAX_CONNECTIONS", "0"),
        ("DASHBOARD_MAX_CONNECTIONS", "1e3"),
        ("DASHBOARD_MAX_CONNECTIONS", ""),
        ("DASHBOARD_MAX_CONNECTIONS", "9" * 100),
        ("DASHBOARD_TRADE_BUFFER", "abc"),
        ("DASHBOARD_TRADE_BUFFER", "0"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_value(name: str, value: str) -> None:
    with pytest.raises(BadLimit) as caught:
        ApiLimits.from_env({name: value})
    message = str(caught.value)
    assert message.startswith(name) and "\n" not in message and len(message) < 200
    # Quoted as every error message quotes a value: its repr, cut at 64 characters with the length said.
    assert (repr(value) if len(value) <= 64 else f"{value[:64]!r}... ({len(value)} characters)") in message
