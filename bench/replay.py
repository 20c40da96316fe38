"""Row 12: a replay at ``--speed max`` streaming to one subscriber process that decodes and verifies every message.

The recording is the stream of a saturated feed, written in-process: row 8's stream
(:func:`bench.subscriber_ceiling.build_stream`: the default instruments at ``--rate 4000`` in 5 ms engine steps,
one depth-100 subscription, 50 messages per item), each item a record of a ``.mdrec`` file written with the
recorder's own :class:`~feed_server.record.format.RecordingWriter`. ``python -m feed_server --replay FILE --speed
max`` serves it; ``bench.stream_client`` (its own process, depth 100) applies every message to an OrderBook with
sequence, crossing, checksum and digest verified, from its first item until it has every recorded message. The
figure is level changes per second over that window (wall clock); the replay's CPU is counted over the same
window.

Baseline in the same run: the same client work without gRPC or a second process: decoding the same items and
applying every message with ``apply_message``, timed with ``time.process_time()``; the ratio is the share of the
consumer's own ceiling that the replay delivers.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from bench.procs import free_port, run_client, started, wait_for_grpc_health
from bench.report import Result, at_least
from bench.subscriber_ceiling import Stream, build_stream
from feed_server.protocol.book import MAX_DEPTH
from feed_server.protocol.core import OrderBook
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.wire import apply_message, instrument_to_pb
from feed_server.record.format import RecordingWriter

__all__ = ["TARGET", "run", "write_recording"]

log = logging.getLogger(__name__)

TARGET = 300_000  # level changes per second


def write_recording(stream: Stream, path: Path) -> None:
    """Write ``stream``'s items as a recording (each item one record), as the recorder would have."""
    header = pb.RecordingHeader(
        instruments=[instrument_to_pb(spec) for spec in DEFAULT_INSTRUMENTS],
        depth=MAX_DEPTH,
        source_address="bench (in-process engine)",
        session_id="bench",
        start_time_ns=time.time_ns(),
        recorder="bench.replay",
    )
    with RecordingWriter(path, header) as writer:
        for item in stream.items:
            writer.write(time.time_ns(), item)


def _apply_in_process(stream: Stream) -> float:
    """CPU seconds to decode every item and apply every message with apply_message (the baseline's work)."""
    books = {spec.instrument_id: OrderBook(spec.instrument_id, MAX_DEPTH) for spec in DEFAULT_INSTRUMENTS}
    decode = pb.SubscribeResponse.FromString
    start = time.process_time()
    for raw in stream.items:
        for message in decode(raw).messages:
            apply_message(books[message.instrument_id], message)
    return time.process_time() - start


def run(quick: bool) -> list[Result]:
    stream = build_stream(4.0 if quick else 20.0)
    log.info("replay stream: %s", stream.describe())
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        path = Path(tmp) / "saturated.mdrec"
        write_recording(stream, path)
        size = path.stat().st_size
        port = free_port()
        address = f"127.0.0.1:{port}"
        args = ["-m", "feed_server", "--host", "127.0.0.1", "--port", str(port), "--replay", str(path)]
        with started("replay", [*args, "--speed", "max"]) as replay:
            wait_for_grpc_health(replay, address, 15)
            client = ["-m", "bench.stream_client", "--address", address, "--depth", str(MAX_DEPTH)]
            client += ["--seconds", "120", "--until-messages", str(stream.messages), "--cpu-pid", str(replay.pid)]
            got = run_client("replay-client", client, 150)
    log.info("replay at max: %s", got)
    if got["messages"] != stream.messages or got["errors"] or got["resyncs"]:
        raise RuntimeError(
            f"the client got {got['messages']:,} of {stream.messages:,} messages, {got['errors']} book errors, "
            f"{got['resyncs']} resyncs"
        )
    baseline = stream.changes / _apply_in_process(stream)
    return [
        Result(
            "12",
            "replay at --speed max: 1 subscriber process decodes + verifies, depth 100",
            got["changes_per_s"],
            "changes/s",
            at_least(TARGET, ">= 300,000"),
            baseline=baseline,
            note=(
                f"{stream.changes:,} changes in {stream.messages:,} msgs ({stream.changes / stream.updates:.1f} per "
                f"update), {size / 1e6:.1f} MB file, in {got['seconds']:.2f} s, every message verified; replay CPU "
                f"{got['cpu_percent']:.0f}% of a core over the window; baseline: the client's same work in-process "
                "(decode + apply_message, no gRPC)"
            ),
        )
    ]
