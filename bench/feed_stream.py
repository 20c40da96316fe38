"""Row 2: level changes per second one subscriber process receives, decodes and applies from the feed server.

The feed runs at ``HIGHEST_RATE`` (order events per second per instrument, beyond what one process can
simulate, so it runs flat out). The client (``bench.stream_client``, its own process) applies every message
to an OrderBook with sequence and checksum verified. Baseline in the same run: ``bench.bare_stream``, a
bare grpc.aio server streaming pre-built messages with the same mean changes per message and messages per
stream item as the feed just sent, to the same client in ``--bare`` mode (receive and decode only).
"""

from __future__ import annotations

import logging

from bench.procs import free_port, run_client, started, wait_for_grpc_health, wait_for_output
from bench.report import Result, at_least

__all__ = ["HIGHEST_RATE", "feed_args", "run"]

log = logging.getLogger(__name__)

HIGHEST_RATE = 20_000


def feed_args(port: int, rate: float, seed: int = 1) -> list[str]:
    """``python -m feed_server`` arguments on 127.0.0.1."""
    return ["-m", "feed_server", "--host", "127.0.0.1", "--port", str(port), "--seed", str(seed), "--rate", f"{rate:g}"]


def _client_args(address: str, seconds: float, bare: bool) -> list[str]:
    args = ["-m", "bench.stream_client", "--address", address, "--seconds", f"{seconds}"]
    return [*args, "--bare"] if bare else args


def run(quick: bool) -> list[Result]:
    seconds = 2.0 if quick else 8.0
    port = free_port()
    address = f"127.0.0.1:{port}"
    with started("feed", feed_args(port, HIGHEST_RATE)) as feed:
        wait_for_grpc_health(feed, address, 15)
        before = feed.ps.cpu_times()
        got = run_client("stream-client", _client_args(address, seconds, False), seconds + 30)
        after = feed.ps.cpu_times()
    feed_cpu = 100 * (after.user + after.system - before.user - before.system) / got["seconds"]
    log.info("feed stream: %s", got)
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
            f"feed stream: 1 subscriber process decodes + applies, --rate {HIGHEST_RATE}",
            got["changes_per_s"],
            "changes/s",
            at_least(200_000, ">= 200,000 and >= 0.5x"),
            baseline=base["changes_per_s"],
            min_ratio=0.5,
            note=(
                f"feed sent {per_message:.2f} changes/msg, {per_item:.1f} msgs/item, {got['messages_per_s']:,.0f} "
                f"msgs/s, feed CPU {feed_cpu:.0f}%, {got['resyncs']} resyncs, {got['errors']} book errors; "
                f"baseline: bare grpc.aio stream of the same sizes, {base['messages_per_s']:,.0f} msgs/s"
            ),
        )
    ]
