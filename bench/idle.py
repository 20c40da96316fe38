"""Row 7: CPU of the feed server and of the dashboard at the default rate, with no client and one page.

"No client" for the dashboard is the dashboard with no page and no WebSocket open (its own feed subscription
runs); for the feed server it is run.py's feed, whose only subscriber is then that dashboard. A lone feed with
no subscriber at all (``python -m feed_server`` alone) is measured over the same window, for comparison. The
floor they are judged against (rows 7e, 7f, :mod:`bench.idle_floor`) replays that lone feed's own stream items,
recorded over the same window length, between a bare ``grpc.aio`` server and client.
"""

from __future__ import annotations

import psutil

from bench.idle_floor import floor_cpu, record
from bench.procs import Proc, cpu_percent, free_port, started, wait_for_grpc_health

__all__ = ["dashboard_process", "feed_process", "idle_cpu"]


def feed_process(run_py: Proc) -> psutil.Process:
    return run_py.descendant("feed_server")


def dashboard_process(run_py: Proc) -> psutil.Process:
    """The process serving the dashboard: a ``dashboard`` child of run.py, or run.py itself."""
    for proc in run_py.ps.children(recursive=True):
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "dashboard" in cmdline and "feed_server" not in cmdline:
            return proc
    return run_py.ps


def idle_cpu(run_py: Proc, seconds: float) -> tuple[float, float, float, float, float]:
    """CPU % over one window of: run.py's feed (the dashboard its only subscriber), run.py's dashboard with no
    client, and a lone feed server with no subscriber; then over another of the same length, the floor: a bare
    server and client exchanging that lone feed's stream items at their times."""
    port = free_port()
    with started("idle-feed", ["-m", "feed_server", "--host", "127.0.0.1", "--port", str(port), "--seed", "1"]) as feed:
        wait_for_grpc_health(feed, f"127.0.0.1:{port}", 15)
        feed_cpu, dash_cpu, lone_cpu = cpu_percent([feed_process(run_py), dashboard_process(run_py), feed.ps], seconds)
        items = record(f"127.0.0.1:{port}", seconds)
    floor_server, floor_client = floor_cpu(items, seconds)
    return feed_cpu, dash_cpu, lone_cpu, floor_server, floor_client
