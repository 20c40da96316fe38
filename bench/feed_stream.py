"""Row 2: level changes per second one subscriber process receives, decodes and applies from the feed server.

"Its highest rate" is found, not assumed: the full run tries each of ``RATES`` (order events per second
per instrument; the feed saturates somewhere in that range on this machine) and keeps the best; --quick
tries ``QUICK_RATE`` only. The client (``bench.stream_client``, its own process) applies every message
to an OrderBook with sequence and checksum verified, and reads the feed process's CPU times when its window
opens and when it closes, so the feed's CPU is counted over the measurement window alone (not the feed's
start-up, the client's connection or its first item). Baseline in the same run: ``bench.bare_stream``, a
bare grpc.aio server streaming pre-built messages with the same mean changes per message and messages per
stream item as the feed just sent, to the same client in ``--bare`` mode (receive and decode only).
"""

from __future__ import annotations

import logging
from typing import Any

from bench.procs import free_port, run_client, started, wait_for_grpc_health, wait_for_output
from bench.report import Result, at_least

__all__ = ["QUICK_RATE", "RATES", "feed_args", "run"]

log = logging.getLogger(__name__)

RATES = (500, 1_000, 2_000, 4_000, 8_000)
QUICK_RATE = 1_000


def feed_args(port: int, rate: float, seed: int = 1, metrics_port: int | None = None) -> list[str]:
    """``python -m feed_server`` arguments on 127.0.0.1 (with its Prometheus metrics on ``metrics_port``)."""
    args = ["-m", "feed_server", "--host", "127.0.0.1", "--port", str(port), "--seed", str(seed), "--rate", f"{rate:g}"]
    return args if metrics_port is None else [*args, "--metrics-port", str(metrics_port)]


def _client_args(address: str, seconds: float, bare: bool, cpu_pid: int | None = None) -> list[str]:
    args = ["-m", "bench.stream_client", "--address", address, "--seconds", f"{seconds}"]
    if cpu_pid is not None:
        args += ["--cpu-pid", str(cpu_pid)]
    return [*args, "--bare"] if bare else args


def _feed_at(rate: float, seconds: float) -> dict[str, Any]:
    """The stream client's figures against ``python -m feed_server --rate``, the feed's CPU % over its window."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    with started("feed", feed_args(port, rate)) as feed:
        wait_for_grpc_health(feed, address, 15)
        got = run_client("stream-client", _client_args(address, seconds, False, feed.pid), seconds + 30)
    got["rate"] = rate
    log.info("feed stream at --rate %g: %s", rate, got)
    return got


def run(quick: bool) -> list[Result]:
    seconds = 2.0 if quick else 6.0
    tried = [_feed_at(rate, seconds) for rate in ((QUICK_RATE,) if quick else RATES)]
    got = max(tried, key=lambda r: float(r["changes_per_s"]))
    feed_cpu = got["cpu_percent"]
    per_message, per_item = got["changes_per_message"], got["messages_per_item"]
    bare_port = free_port()
    bare_args = ["-m", "bench.bare_stream", "--port", str(bare_port)]
    bare_args += ["--changes", f"{per_message:.3f}", "--messages", f"{per_item:.3f}"]
    with started("bare-stream", bare_args) as bare:
        wait_for_output(bare, "READY", 15)
        base = run_client("bare-client", _client_args(f"127.0.0.1:{bare_port}", seconds, True), seconds + 30)
    log.info("bare stream: %s", base)
    return [
        Result(
            "2",
            f"feed stream: 1 subscriber process decodes + applies, --rate {got['rate']:g}",
            got["changes_per_s"],
            "changes/s",
            at_least(200_000, ">= 200,000 and >= 0.5x"),
            baseline=base["changes_per_s"],
            min_ratio=0.5,
            note=(
                f"feed sent {per_message:.2f} changes/msg, {per_item:.1f} msgs/item, {got['messages_per_s']:,.0f} "
                f"msgs/s, feed CPU {feed_cpu:.0f}% of a core over the window, {got['resyncs']} resyncs, "
                f"{got['errors']} book errors; "
                f"baseline: bare grpc.aio stream of the same sizes, {base['messages_per_s']:,.0f} msgs/s; "
                + ", ".join(f"--rate {r['rate']:g}: {r['changes_per_s']:,.0f}/s" for r in tried)
            ),
        )
    ]
