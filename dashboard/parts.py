"""The parts one dashboard app owns, created once when the app is built and kept on the app itself.

``build_app`` (dashboard/main.py) creates a ``DashboardParts`` and stores it as ``app.state.dashboard``; pages
and tests read it back with ``parts_of(app)``. There are no module-level singletons: an app built again (NiceGUI's
test fixture does so per test) replaces its parts, and nothing else holds on to the old ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from dashboard.api.fanout import MarketDataHub
from dashboard.bridge import FeedBridge
from dashboard.history import MarketHistory

__all__ = ["DashboardParts", "parts_of"]


@dataclass(frozen=True, slots=True)
class DashboardParts:
    """The app's feed bridge, its WebSocket/REST hub and the market history the charts draw."""

    bridge: FeedBridge
    hub: MarketDataHub
    history: MarketHistory


def parts_of(app: FastAPI) -> DashboardParts:
    """The parts ``build_app`` stored on ``app`` (RuntimeError when the app was not built by it)."""
    parts = getattr(app.state, "dashboard", None)
    if not isinstance(parts, DashboardParts):
        raise RuntimeError("the dashboard's parts are not set up on this app (dashboard/main.py builds them)")
    return parts
