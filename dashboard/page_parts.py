"""What the book page ``/`` and the overview ``/overview`` share: the status words and colours, element markers,
in-place row updates, and the header's controls (the link to the other page and the dark-mode toggle).

Dark mode is remembered per browser in ``app.storage.user`` (a signed session cookie names the browser; the
value lives on the server), so it needs ``storage_secret`` in ``ui.run`` (dashboard/main.py).
"""

from __future__ import annotations

from typing import Any, TypeVar

from nicegui import app, ui

from feed_server.client.keeper import ConnectionState
from feed_server.client.sync import InstrumentBook

__all__ = [
    "DARK_MODE_KEY",
    "STATUS_CLASSES",
    "ElementT",
    "assign_rows",
    "header_controls",
    "marked",
    "status_text",
]

ElementT = TypeVar("ElementT", bound=ui.element)

DARK_MODE_KEY = "dark_mode"
STATUS_CLASSES = {
    "LIVE": "bg-green-700",
    "STALE": "bg-red-700",
    "RECONNECTING": "bg-amber-600",
    "CONNECTING": "bg-amber-600",
    "STOPPED": "bg-grey-8",
}


def status_text(state: ConnectionState, book: InstrumentBook | None) -> str:
    """What a status says: the connection's state, or STALE when this book is not trustworthy."""
    if state is ConnectionState.LIVE:
        return "STALE" if book is None or book.stale else "LIVE"
    return state.value.upper()


def marked(element: ElementT, name: str) -> ElementT:
    """Mark an element for the simulated user (``marker=name``) and for a browser (``data-testid``)."""
    return element.mark(name).props(f"data-testid={name}")


def assign_rows(table: ui.table, rows: list[dict[str, Any]]) -> None:
    """Replace a table's rows in place, sending nothing when they did not change."""
    if table.rows != rows:
        table.rows = rows


def header_controls(link_text: str, link_target: str) -> None:
    """The header's right end: a link to the other page and the dark-mode toggle (remembered per browser)."""
    storage = app.storage.user  # read in the page's request; the toggle writes to the same dict later
    dark = ui.dark_mode(bool(storage.get(DARK_MODE_KEY, False))).mark("dark")

    def toggle() -> None:
        dark.value = not dark.value
        storage[DARK_MODE_KEY] = bool(dark.value)
        button.props(f"icon={_dark_icon(bool(dark.value))}")

    with ui.row().classes("items-center gap-1 ml-auto no-wrap"):
        marked(ui.link(link_text, link_target).classes("text-sm"), "page_link")
        button = marked(
            ui.button(icon=_dark_icon(bool(dark.value)), on_click=toggle)
            .props('flat round dense aria-label="Dark mode"')
            .tooltip("Dark mode"),
            "dark_mode",
        )


def _dark_icon(dark: bool) -> str:
    return "light_mode" if dark else "dark_mode"
