"""``marketdata_core_info{core="compiled"|"python"}``: the book core this process runs (feed_server.protocol.core),
on both servers' ``/metrics``."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily

from feed_server.protocol.core import CORE

__all__ = ["CORE_METRIC", "core_info"]

CORE_METRIC = "marketdata_core_info"


def core_info() -> GaugeMetricFamily:
    """The metric: 1, labelled with the core ("compiled" or "python")."""
    family = GaugeMetricFamily(
        CORE_METRIC, "The order book core this process runs: compiled, or the pure-Python fallback.", labels=["core"]
    )
    family.add_metric([CORE], 1)
    return family
