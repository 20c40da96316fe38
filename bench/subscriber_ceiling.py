"""Row 8: the subscriber library's ceiling: level changes per second it decodes, verifies and applies on one core.

The stream is the feed's own, recorded beforehand: an in-process :class:`~feed_server.server.engine.Engine` (the
default instruments and seed), never started, one subscription to every instrument at depth 100, driven through
``seconds`` of simulated time in steps of ``step_ms``. Every message it publishes, in order, is cut into stream
items of ``ITEM_MESSAGES`` messages and serialised as ``SubscribeResponse`` bytes, as the wire carries them.

The row's stream is the one a consumer gets from a saturated feed, the case where its ceiling matters: ``--rate
4000`` (where row 2 finds the feed's best; the engine cannot keep up with it on this machine) in 5 ms steps (the
engine's slice when it is behind), so each message carries the net changes of one instrument's events in a slice
(see feed_server.server.engine). :func:`build_stream` takes any rate and step: at low rates a message is one
event, which costs more per change (the work per message is shared by fewer changes).

Timed with ``time.process_time()`` (this process's CPU only: the machine is shared), over every item: the decoding
(``SubscribeResponse.FromString``) and the consumer's per-message path as
:class:`~feed_server.client.keeper.Subscriber` runs it (``InstrumentSync.on_live_message``, and
``on_stream`` for what that declines: the first snapshots), so the sequence, the checksum, the book digest and
the crossing are verified on every message, and every message must be applied. The subscriber's own counters and
listener calls are not in it. The baseline is the decoding alone, with the same walk over the messages: the
ratio is the decoding's share. No gRPC, no event loop: the library's ceiling.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.report import Result, at_least
from feed_server.client.sync import InstrumentBook, InstrumentSync
from feed_server.protocol.book import MAX_DEPTH
from feed_server.protocol.core import OrderBook
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.server.engine import Engine

__all__ = ["ITEM_MESSAGES", "RATE", "STEP_MS", "TARGET", "Stream", "build_stream", "run", "time_decode", "time_sync"]

ITEM_MESSAGES = 50  # messages per stream item
RATE = 4_000.0  # order events per second per instrument
STEP_MS = 5  # simulated milliseconds per engine step
TARGET = 1_000_000  # level changes per second (the compiled core's target; the pure path's was 300,000)


@dataclass(frozen=True, slots=True)
class Stream:
    """A recorded stream: its items as bytes, and what they hold."""

    items: list[bytes]
    messages: int
    updates: int
    changes: int
    seconds: float
    rate: float
    step_ms: float

    @property
    def size(self) -> int:
        return sum(len(item) for item in self.items)

    def describe(self) -> str:
        return (
            f"{self.messages:,} msgs ({self.updates:,} updates, {self.changes:,} changes, "
            f"{self.changes / max(1, self.updates):.2f} per update) in {len(self.items):,} items of "
            f"{ITEM_MESSAGES} msgs, {self.size / 1e6:.1f} MB: engine at --rate {self.rate:g} in {self.step_ms:g} ms "
            f"steps for {self.seconds:g} s simulated, depth {MAX_DEPTH}"
        )


def build_stream(seconds: float, rate: float = RATE, step_ms: float = STEP_MS, seed: int = 1) -> Stream:
    """Record what an in-process engine publishes to one depth-100 subscriber over ``seconds`` simulated."""
    engine = Engine(DEFAULT_INSTRUMENTS, seed=seed, rate=rate)
    subscription = engine.fanout.subscribe(None, MAX_DEPTH)
    messages: list[pb.BookMessage] = []
    step_ns = int(step_ms * 1e6)
    try:
        messages.extend(subscription.take_nowait())  # the initial snapshots
        for step in range(1, int(seconds * 1e9) // step_ns + 1):
            engine.advance(step * step_ns)
            messages.extend(subscription.take_nowait())
        if subscription.resyncs:
            raise RuntimeError(f"the subscription was resynchronised {subscription.resyncs} times")
    finally:
        engine.fanout.unsubscribe(subscription)
    items = [
        pb.SubscribeResponse(session_id="bench", messages=messages[i : i + ITEM_MESSAGES]).SerializeToString()
        for i in range(0, len(messages), ITEM_MESSAGES)
    ]
    updates = [m.update for m in messages if m.WhichOneof("body") == "update"]
    changes = sum(len(update.changes) for update in updates)
    return Stream(items, len(messages), len(updates), changes, seconds, rate, step_ms)


def time_sync(stream: Stream) -> float:
    """CPU seconds to decode every item and apply every message as the subscriber does, each one verified."""
    syncs = {
        spec.instrument_id: InstrumentSync(InstrumentBook(spec, OrderBook(spec.instrument_id, MAX_DEPTH)))
        for spec in DEFAULT_INSTRUMENTS
    }
    decode = pb.SubscribeResponse.FromString
    refused = 0
    start = time.process_time()
    for raw in stream.items:
        for message in decode(raw).messages:
            sync = syncs[message.instrument_id]
            if sync.on_live_message(message) is None:  # the subscriber's fast path, else its general one
                refused += sync.on_stream(message).fault is not None
    elapsed = time.process_time() - start
    applied = sum(sync.entry.messages_applied for sync in syncs.values())
    if refused or applied != stream.messages:
        raise RuntimeError(f"{applied:,} of {stream.messages:,} messages applied, {refused} refused")
    return elapsed


def time_decode(stream: Stream) -> float:
    """CPU seconds to decode every item and walk its messages (the baseline: nothing verified or applied)."""
    decode = pb.SubscribeResponse.FromString
    seen = 0
    start = time.process_time()
    for raw in stream.items:
        for message in decode(raw).messages:
            seen += message.sequence
    return time.process_time() - start


def run(quick: bool) -> list[Result]:
    stream = build_stream(1.0 if quick else 5.0)
    repeats = 3 if quick else 7
    model = base = float("inf")
    for _ in range(repeats):  # best of several rounds, interleaved: both see the same machine noise
        model = min(model, time_sync(stream))
        base = min(base, time_decode(stream))
    return [
        Result(
            "8",
            f"subscriber library ceiling: decode + verify + apply, 1 core, {stream.changes / stream.updates:.1f} "
            "changes/msg",
            stream.changes / model,
            "changes/s",
            at_least(TARGET, f">= {TARGET:,}"),
            baseline=stream.changes / base,
            note=(
                f"best of {repeats}, CPU time: {stream.messages / model:,.0f} msgs/s, "
                f"{1e6 * model / stream.messages:.2f} us/msg, {1e6 * model / stream.changes:.2f} us/change; "
                f"{stream.describe()}; baseline: decoding alone"
            ),
        )
    ]
