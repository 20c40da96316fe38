"""The public API (``from feed_server.client import connect``) end to end, against real feeds over gRPC and NATS.

Each book the library hands out is compared with an independent consumer's: a raw gRPC Subscribe stream applied
to a protocol OrderBook by this test, at every sequence both saw.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal

import grpc.aio
import pytest

import feed_server.client
from feed_server.client import Book, FeedUnavailable, Instrument, UnknownInstrument, Update, connect
from feed_server.launch import REPO_ROOT, child_env
from feed_server.protocol.book import OrderBook
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.pb import market_data_pb2_grpc
from feed_server.protocol.wire import apply_message
from tests.bus.support import running_nats
from tests.servers import free_port, running_feed_server, start_feed_process, wait_for_health
from tests.waiting import stop_process

SPECS = {spec.instrument_id: spec for spec in DEFAULT_INSTRUMENTS}
Levels = list[tuple[Decimal, Decimal]]


def test_every_public_name_is_importable_and_documented() -> None:
    assert feed_server.client.__all__ == sorted(feed_server.client.__all__)
    for name in feed_server.client.__all__:
        value = getattr(feed_server.client, name)
        assert value.__doc__, f"{name} has no docstring"
    namespace: dict[str, object] = {}
    exec("from feed_server.client import *", namespace)  # what `import *` gives is the API
    assert set(feed_server.client.__all__) <= set(namespace)
    assert {"connect", "FeedError", "FeedUnavailable", "UnknownInstrument"} <= set(feed_server.client.__all__)


def _decimal_levels(instrument_id: str, levels: list[tuple[int, int]]) -> Levels:
    spec = SPECS[instrument_id]
    return [(spec.tick_size * price, spec.lot_size * size) for price, size in levels]


async def _raw_books(address: str, ids: list[str], depth: int, until: int, out: dict[tuple[str, int], Book]) -> None:
    """An independent consumer: a raw Subscribe stream applied here, each book kept by (id, sequence)."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = market_data_pb2_grpc.MarketDataStub(channel).Subscribe(
            pb.SubscribeRequest(instrument_ids=ids, depth=depth)
        )
        books = {iid: OrderBook(iid, depth) for iid in ids}
        try:
            async for item in call:
                for message in item.messages:
                    book = books[message.instrument_id]
                    apply_message(book, message)
                    assert book.sequence is not None
                    out[(message.instrument_id, book.sequence)] = Book(
                        SPECS[message.instrument_id],
                        book.sequence,
                        True,
                        None,
                        book.bids(depth),
                        book.asks(depth),
                        book.checksum(),
                    )
                if len(out) >= until:
                    return
        finally:
            call.cancel()


async def _read(updates: AsyncIterator[Update], count: int) -> list[Update]:
    seen: list[Update] = []
    async with asyncio.timeout(20):
        async for update in updates:
            seen.append(update)
            if len(seen) >= count:
                return seen
    return seen


def _check_in_order_and_equal(seen: list[Update], independent: dict[tuple[str, int], Book]) -> int:
    """Every update verified, contiguous per instrument, and equal to the independent consumer's book."""
    last: dict[str, int] = {}
    shared = 0
    for update in seen:
        assert update.book.live and update.conflated == 0, update
        assert update.sequence is not None and update.book.sequence == update.sequence
        previous = last.get(update.instrument_id)
        assert previous is None or update.sequence == previous + 1, (update.instrument_id, previous, update.sequence)
        last[update.instrument_id] = update.sequence
        other = independent.get((update.instrument_id, update.sequence))
        if other is not None:
            assert update.book == other, (update.book, other)
            shared += 1
        bid, ask = update.book.best_bid, update.book.best_ask
        assert bid is not None and ask is not None and bid < ask
        assert update.book.mid == (bid + ask) / 2
        assert update.book.bids == sorted(update.book.bids, reverse=True)[: len(update.book.bids)]
        for trade in update.trades:
            assert trade.side in ("buy", "sell") and trade.size > 0 and trade.time_ns > 0
    return shared


async def test_grpc_books_are_verified_in_order_and_equal_an_independent_consumer() -> None:
    ids = ["AAPL", "BTC-USD"]
    async with running_feed_server(rate=300.0, seed=4) as server:
        async with connect(server.address, instruments=ids, depth=10) as feed:
            assert set(feed.instruments) == set(ids)
            btc = feed.instruments["BTC-USD"]
            assert isinstance(btc, Instrument) and btc.tick_size == SPECS["BTC-USD"].tick_size
            await feed.wait_live(timeout=10.0)
            book = feed.book("BTC-USD")
            assert book.live and book.reason is None and len(book.bids) <= 10 and len(book.asks) <= 10
            independent: dict[tuple[str, int], Book] = {}
            updates = feed.updates()
            raw = asyncio.create_task(_raw_books(server.address, ids, 10, 400, independent))
            seen = await _read(updates, 600)
            async with asyncio.timeout(20):
                await raw
            assert _check_in_order_and_equal(seen, independent) >= 100
            assert any(update.trades for update in seen)
            with pytest.raises(UnknownInstrument):
                feed.book("MSFT")  # not subscribed


async def test_an_instrument_the_feed_does_not_have_is_refused_at_once() -> None:
    async with running_feed_server(rate=50.0) as server:
        with pytest.raises(UnknownInstrument, match="NOPE"):
            async with asyncio.timeout(10):
                async with connect(server.address, instruments=["AAPL", "NOPE"], timeout=5.0):
                    pass


async def test_no_feed_at_the_address_is_feed_unavailable_in_bounded_time() -> None:
    with pytest.raises(FeedUnavailable, match="no instrument list"):
        async with asyncio.timeout(10):
            async with connect(f"127.0.0.1:{free_port()}", timeout=1.0):
                pass
    with pytest.raises(ValueError):
        connect("127.0.0.1:1", depth=0)


@contextmanager
def _feed_process(port: int, *args: str) -> Iterator[None]:
    process = start_feed_process(port, *args)
    try:
        wait_for_health(f"127.0.0.1:{port}", 15.0)
        yield
    finally:
        stop_process(process)


async def test_a_killed_and_restarted_feed_the_iterator_goes_on_stale_then_live() -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    process = start_feed_process(port, "--instruments", "AAPL,MSFT", "--rate", "200")
    try:
        await asyncio.to_thread(wait_for_health, address, 15.0)
        async with connect(address, depth=5) as feed:
            await feed.wait_live(timeout=10.0)
            updates = feed.updates()
            await _read(updates, 20)
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
            stale: Update | None = None
            async with asyncio.timeout(10):
                async for update in updates:
                    if not update.book.live:
                        stale = update
                        break
            assert stale is not None and stale.book.reason
            with pytest.raises(FeedUnavailable, match="not live"):
                await feed.wait_live(timeout=0.5)
            stop_process(process)
            process = start_feed_process(port, "--instruments", "AAPL,MSFT", "--rate", "200")
            await feed.wait_live(timeout=20.0)
            async with asyncio.timeout(10):
                async for update in updates:
                    if update.book.live and update.instrument_id == "AAPL":
                        break
            assert feed.book("AAPL").live and feed.book("MSFT").live
    finally:
        stop_process(process)


async def test_a_reader_that_stops_for_five_seconds_is_bounded_then_current() -> None:
    async with running_feed_server(rate=2000.0, seed=3) as server:
        async with connect(server.address, depth=10, max_pending=500) as feed:
            await feed.wait_live(timeout=10.0)
            updates = feed.updates()
            await _read(updates, 10)
            await asyncio.sleep(5.0)  # the point of the test: the reader does not read for 5 s
            reader = updates
            pending = len(reader._queue)  # type: ignore[attr-defined]
            assert pending <= 500 + len(feed.instruments), pending
            seen = await _read(updates, pending)
            assert sum(update.conflated for update in seen) > 0
            last: dict[str, int] = {}
            for update in seen:  # folded updates keep each instrument's order
                assert update.sequence is not None
                assert update.sequence > last.get(update.instrument_id, -1)
                last[update.instrument_id] = update.sequence
            # Caught up: what it reads now is the current book.
            async with asyncio.timeout(10):
                async for update in updates:
                    if update.conflated == 0 and update.sequence == feed.book(update.instrument_id).sequence:
                        break


@asynccontextmanager
async def _nats_feed(*args: str) -> AsyncIterator[tuple[str, str]]:
    with running_nats() as nats_server:
        port = free_port()
        with _feed_process(port, "--publish", nats_server.url, *args):
            yield nats_server.url, f"127.0.0.1:{port}"


async def test_nats_books_are_verified_in_order_and_equal_an_independent_consumer() -> None:
    ids = ["AAPL", "ES-Z6"]
    async with _nats_feed("--instruments", ",".join(ids), "--rate", "300") as (url, grpc_address):
        async with connect(url, instruments=ids, depth=10) as feed:
            await feed.wait_live(timeout=15.0)
            independent: dict[tuple[str, int], Book] = {}
            updates = feed.updates()
            raw = asyncio.create_task(_raw_books(grpc_address, ids, 10, 400, independent))
            seen = [update for update in await _read(updates, 600) if update.book.live]
            async with asyncio.timeout(20):
                await raw
            # Over NATS the books are kept at the published depth and read at the asked one: the same levels.
            shared = 0
            for update in seen:
                other = independent.get((update.instrument_id, update.sequence or 0))
                if other is not None:
                    assert (update.book.bids, update.book.asks) == (other.bids, other.asks)
                    shared += 1
            assert shared >= 100


async def test_the_example_script_runs_against_a_real_feed() -> None:
    """scripts/book_example.py, the README's example, uses only the public API and prints verified updates."""
    async with running_feed_server(rate=200.0) as server:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(REPO_ROOT / "scripts" / "book_example.py"),
            server.address,
            "ETH-USD",
            "5",
            cwd="/",  # from another directory than the checkout
            env=child_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0].startswith("ETH-USD: bid ") and len(lines) == 6, lines
    assert all(line.startswith("seq ") and " live best " in line for line in lines[1:]), lines
    source = (REPO_ROOT / "scripts" / "book_example.py").read_text()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert all(
        line in ("import asyncio", "import sys") or line.startswith("from feed_server.client import")
        for line in imports
    )


async def test_the_readme_example_runs_as_written() -> None:
    """The README's "Scripts in Python" block, run against a real feed (its address swapped in) until it has
    printed the tick size, the top of the book, live updates and a trade."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("### Scripts in Python") :]
    code = section[section.index("```python\n") + len("```python\n") : section.index("\n```\n")]
    async with running_feed_server(rate=400.0) as server:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code.replace("127.0.0.1:50051", server.address),
            cwd="/",
            env=child_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        lines: list[str] = []
        try:
            async with asyncio.timeout(30):
                while not any(line.startswith(("buy ", "sell ")) for line in lines) or len(lines) < 5:
                    line = (await process.stdout.readline()).decode()
                    assert line, (lines, await process.stderr.read() if process.stderr else b"")
                    lines.append(line.rstrip("\n"))
        finally:
            process.kill()
            await process.communicate()
    assert lines[0] == str(SPECS["BTC-USD"].tick_size)
    bid, ask, mid, sequence, checksum = lines[1].split()
    assert Decimal(bid) < Decimal(mid) < Decimal(ask) and int(sequence) > 0 and checksum.isdigit()
    assert any(line.startswith("BTC-USD ") and line.endswith(" True None") for line in lines[2:])
