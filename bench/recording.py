"""Rows 13a and 13b: the recorder (``python -m feed_server.record``) against a real feed process.

- 13a: the size of a recording at the default rate, per 10 minutes: ``RECORD_SECONDS`` of every instrument at
  depth 100 from ``python -m feed_server`` at its defaults, the file's size scaled to 600 s.
- 13b: recording the feed at its highest rate (``--rate 8000``, where row 2 finds the feed saturated, at 100 % of
  a core) for ``FAST_SECONDS``: the messages lost, counted from the file: per instrument, every update must follow
  the one before (sequence + 1), or come after a snapshot (the feed resynchronised a slow recorder, which is
  recorded too, so the file stays consistent). A gap anywhere is a lost message. Resyncs are noted beside it.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.feed_stream import feed_args
from bench.procs import free_port, started, wait_for_grpc_health
from bench.report import Result, at_most
from feed_server.launch import REPO_ROOT, child_env
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.record.format import RecordingReader

__all__ = ["FAST_RATE", "run"]

log = logging.getLogger(__name__)

RECORD_SECONDS = 30.0
FAST_SECONDS = 10.0
FAST_RATE = 8_000.0
DEFAULT_RATE = 50.0


def _record(rate: float, seconds: float, path: Path) -> None:
    """Run the recorder for ``seconds`` against a feed process at ``rate`` (bounded)."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    with started("feed", feed_args(port, rate)) as feed:
        wait_for_grpc_health(feed, address, 15)
        command = [sys.executable, "-m", "feed_server.record", "--address", address, "--out", str(path)]
        subprocess.run(
            [*command, "--duration", f"{seconds:g}"],
            cwd=REPO_ROOT,
            env=child_env(),
            check=True,
            capture_output=True,
            timeout=seconds + 60,
        )


def _losses(path: Path) -> tuple[int, int, int]:
    """(messages lost, resync snapshots, messages) in a recording, per the module docstring."""
    last: dict[tuple[str, str], int] = {}
    lost = resyncs = messages = 0
    for record in RecordingReader(path):
        session = record.item.session_id
        for message in record.item.messages:
            messages += 1
            key = (session, message.instrument_id)
            if message.WhichOneof("body") == "snapshot":
                resyncs += message.snapshot.reason == pb.SNAPSHOT_REASON_RESYNC
            elif key not in last:
                lost += 1  # an update before its instrument's first snapshot
            else:
                lost += max(0, message.sequence - last[key] - 1)
            last[key] = message.sequence
    return lost, resyncs, messages


def run(quick: bool) -> list[Result]:
    seconds, fast_seconds = (5.0, 3.0) if quick else (RECORD_SECONDS, FAST_SECONDS)
    with tempfile.TemporaryDirectory(prefix="bench-record-") as tmp:
        slow, fast = Path(tmp) / "default.mdrec", Path(tmp) / "fast.mdrec"
        _record(DEFAULT_RATE, seconds, slow)
        size = slow.stat().st_size
        _record(FAST_RATE, fast_seconds, fast)
        lost, resyncs, messages = _losses(fast)
    log.info(
        "recording: %d bytes in %g s at the default rate; at --rate %g: %d lost, %d resyncs of %d messages",
        size,
        seconds,
        FAST_RATE,
        lost,
        resyncs,
        messages,
    )
    return [
        Result(
            "13a",
            f"recording size, default rate (--rate {DEFAULT_RATE:g}), 7 instruments at depth 100, per 10 minutes",
            size * 600 / seconds / 1e6,
            "MB",
            at_most(20, "< 20"),
            note=f"{size:,} bytes in {seconds:g} s, scaled to 600 s",
        ),
        Result(
            "13b",
            f"recording the feed at its highest rate (--rate {FAST_RATE:g}), {fast_seconds:g} s: messages lost",
            float(lost),
            "messages",
            at_most(0, "0"),
            note=f"{messages:,} messages recorded, {resyncs} resync snapshots (recorded: the file stays consistent)",
        ),
    ]
