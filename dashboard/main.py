"""NiceGUI's main file: builds the dashboard app and, when run as a script, serves it.

``python -m dashboard --feed-address HOST:PORT --host 127.0.0.1 --port 8000`` (see dashboard/__main__.py), or
NiceGUI's ``user`` test fixture, which runs this file with ``__name__ == "__main__"``: the feed address then
comes from ``DASHBOARD_FEED_ADDRESS`` (default ``feed_server.defaults.DEFAULT_FEED_ADDRESS``), host and port
from ``DASHBOARD_HOST`` and ``DASHBOARD_PORT`` (default 127.0.0.1:8000).
"""

from __future__ import annotations

import logging
import os

from nicegui import app, ui

from dashboard.api.docs import document_api
from dashboard.api.fanout import MarketDataHub
from dashboard.api.limits import ApiLimits
from dashboard.api.routes import api_router
from dashboard.api.transport import TransportMiddleware
from dashboard.bridge import FeedBridge
from dashboard.history import MarketHistory
from dashboard.metrics import install_metrics
from dashboard.parts import DashboardParts
from feed_server.defaults import DEFAULT_FEED_ADDRESS

__all__ = ["DEFAULT_FEED_ADDRESS", "DEFAULT_HOST", "DEFAULT_PORT", "TITLE", "build_app", "serve"]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
TITLE = "Market data"


def build_app(feed_address: str, limits: ApiLimits | None = None) -> DashboardParts:
    """Set up NiceGUI's app: the feed bridge (started with the app), the JSON API and the pages.

    The app owns its parts: one ``DashboardParts`` (bridge, hub, history), stored as ``app.state.dashboard``
    (read it with ``dashboard.parts.parts_of(app)``) and returned.

    ``limits`` default to ``ApiLimits.from_env(os.environ)`` (DASHBOARD_MAX_CONNECTIONS, DASHBOARD_SEND_TIMEOUT,
    DASHBOARD_TRADE_BUFFER; BadLimit when one is set to an unacceptable value, see dashboard/api/limits.py).
    """
    from dashboard.pages import register_pages  # the page module imports the bridge module, not this one

    bridge = FeedBridge(feed_address)
    hub = MarketDataHub(bridge, limits or ApiLimits.from_env(os.environ))
    history = MarketHistory(bridge)  # the mid, trades and resting sizes the page's charts draw
    parts = DashboardParts(bridge=bridge, hub=hub, history=history)
    app.state.dashboard = parts
    app.on_startup(bridge.start)
    app.on_shutdown(bridge.stop)
    app.on_startup(history.start)
    app.on_shutdown(history.stop)
    app.include_router(api_router(hub))
    install_metrics(app, bridge, hub)
    document_api(app)
    app.add_middleware(TransportMiddleware)
    register_pages()
    return parts


def serve(
    feed_address: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, limits: ApiLimits | None = None
) -> None:
    """Build the app and serve it until SIGINT/SIGTERM (blocking)."""
    build_app(feed_address, limits)
    ui.run(
        host=host,
        port=port,
        reload=False,
        show=False,
        title=TITLE,
        show_welcome_message=False,
        # Signs the session cookie that names a browser for app.storage.user (its dark mode); set your own.
        storage_secret=os.environ.get("DASHBOARD_STORAGE_SECRET", "market-data-dashboard"),
    )


if __name__ in {"__main__", "__mp_main__"}:
    serve(
        os.environ.get("DASHBOARD_FEED_ADDRESS", DEFAULT_FEED_ADDRESS),
        os.environ.get("DASHBOARD_HOST", DEFAULT_HOST),
        int(os.environ.get("DASHBOARD_PORT", DEFAULT_PORT)),
    )
