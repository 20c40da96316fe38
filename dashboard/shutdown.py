"""Clean shutdown of the dashboard (filled in below)."""

from __future__ import annotations


def install_clean_shutdown() -> None:
    """Placeholder."""
