"""The dashboard on a replay works as on the simulator: a real ``python -m feed_server --replay`` process, a real
``python -m dashboard`` process on it, and its JSON WebSocket checked, book by book, against the recording."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

from websockets.asyncio.client import connect

from feed_server.protocol.book import OrderBook
from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.wire import apply_message, instrument_from_pb
from feed_server.record.format import RecordingReader
from tests.dashboard.conftest import start_dashboard
from tests.dashboard.ws_helpers import recv_json, to_units
from tests.servers import feed_process

Levels = tuple[list[tuple[int, int]], list[tuple[int, int]]]
INSTRUMENT = "AAPL"
DEPTH = 10


def recorded_books(path: Path, instrument_id: str) -> tuple[InstrumentSpec, dict[int, Levels]]:
    """The instrument's spec and its book (top DEPTH levels a side, in ticks and lots) after each recorded
    sequence, rebuilt from the recording with every message verified."""
    reader = RecordingReader(path)
    spec = next(instrument_from_pb(i) for i in reader.header.instruments if i.instrument_id == instrument_id)
    book = OrderBook(instrument_id, reader.header.depth)
    books: dict[int, Levels] = {}
    for record in reader:
        for message in record.item.messages:
            if message.instrument_id == instrument_id:
                apply_message(book, message)
                books[message.sequence] = (book.bids(DEPTH), book.asks(DEPTH))
    return spec, books


def _units(levels: list[list[float]], spec: InstrumentSpec) -> list[tuple[int, int]]:
    return [(to_units(price, spec.tick_size), to_units(size, spec.lot_size)) for price, size in levels]


async def test_the_dashboard_on_a_replay_serves_at_each_sequence_the_recorded_book(recording: Path) -> None:
    spec, truth = recorded_books(recording, INSTRUMENT)
    last = max(truth)
    checked: set[int] = set()
    with feed_process("--replay", str(recording), "--speed", "1") as address:
        dashboard = start_dashboard(address)
        try:
            async with asyncio.timeout(30):
                async with connect(dashboard.ws(INSTRUMENT, f"depth={DEPTH}")) as ws:
                    sequence = 0
                    while sequence < last:
                        data = await recv_json(ws, within=10)
                        if data["type"] != "book" or data["stale"]:
                            continue
                        sequence = data["sequence"]
                        bids, asks = truth[sequence]
                        assert _units(data["bids"], spec) == bids, f"bids at sequence {sequence}"
                        assert _units(data["asks"], spec) == asks, f"asks at sequence {sequence}"
                        checked.add(sequence)
            url = f"{dashboard.http}/"
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1, never a proxy
            page = await asyncio.to_thread(lambda: opener.open(url, timeout=10).read().decode())
        finally:
            log = dashboard.stop()
    assert "Traceback" not in log, log
    # The replay ran in the recorded time (about 3 s at 200 events/s): the socket saw many of its states.
    assert len(checked) > 50, f"only {len(checked)} books checked"
    assert last in checked
    assert f"Source: replay of {recording.name} at 1x" in page

