"""Row 6: from launching ``python run.py`` to ``/`` answering 200."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.procs import Proc, free_port, started, wait_for_http

__all__ = ["launched_run_py"]


@contextmanager
def launched_run_py(extra: list[str] | None = None) -> Iterator[tuple[Proc, str, float]]:
    """``python run.py`` on free ports: (process, base URL, seconds from launch to ``/`` answering 200)."""
    port, feed_port = free_port(), free_port()
    args = ["run.py", "--host", "127.0.0.1", "--port", str(port), "--feed-port", str(feed_port), "--seed", "1"]
    launch = time.monotonic()
    with started("run.py", [*args, *(extra or [])], grace=10) as proc:
        base = f"http://127.0.0.1:{port}"
        ready = wait_for_http(proc, f"{base}/", 30, interval=0.01)
        yield proc, base, ready - launch
