"""Binance spot: the pure sync state machine, and the adapter against a local fake Binance (never the real one)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from decimal import Decimal
from typing import Any

import pytest

from feed_server.protocol.instruments import InstrumentSpec
from feed_server.protocol.levels import Level, LevelChange, Side, Trade
from feed_server.server.exchanges.adapter import SourceUnavailable
from feed_server.server.exchanges.binance import BinanceAdapter
from feed_server.server.exchanges.binance_book import (
    BookOut,
    ChangesOut,
    MalformedEvent,
    StaleOut,
    SymbolBook,
    parse_agg_trade,
    parse_depth,
    parse_snapshot,
)
from tests.exchanges.fake_binance import Drop, FakeBinance, Release, Step, WaitDepth, WaitFor, depth_frame, trade_frame
from tests.waiting import eventually

TICK, LOT = Decimal("0.01"), Decimal("0.00001")
MARKETS = {
    "BTCUSDT": ("BTC", "USDT", "0.01000000", "0.00001000"),
    "ETHUSDT": ("ETH", "USDT", "0.01000000", "0.00010000"),
}


def snap(last: int, bids: list[list[str]], asks: list[list[str]]) -> dict[str, Any]:
    return {"lastUpdateId": last, "bids": bids, "asks": asks}


BTC_SNAP = snap(
    1027,
    [["67250.01", "0.51230"], ["67250.00", "1.20000"], ["67249.50", "0.04000"]],
    [["67250.02", "0.31000"], ["67251.00", "2.00000"], ["67255.10", "0.00500"]],
)
ETH_SNAP = snap(500, [["3480.25", "4.1000"], ["3480.20", "0.5000"]], [["3480.26", "1.2500"], ["3480.40", "10.0000"]])


def btc_frames() -> list[str]:
    """BTCUSDT 1020..1036 (the snapshot at 1027 lands inside 1025-1029) and two trades."""
    return [
        depth_frame("BTCUSDT", 1020, 1024, [["67249.00", "3.00000"]], []),
        depth_frame("BTCUSDT", 1025, 1029, [["67250.01", "0.61230"]], [["67250.02", "0.00000"]]),
        depth_frame("BTCUSDT", 1030, 1031, [], [["67250.03", "0.12000"]]),
        trade_frame("BTCUSDT", 9001, "67250.03", "0.01000", True),
        depth_frame("BTCUSDT", 1032, 1035, [["67250.00", "0.00000"]], [["67300.00", "5.00000"]]),
        trade_frame("BTCUSDT", 9002, "67250.01", "0.20000", False),
        depth_frame("BTCUSDT", 1036, 1036, [["67100.00", "0.10000"]], [["67255.10", "0"]]),
    ]


def eth_frames() -> list[str]:
    return [
        depth_frame("ETHUSDT", 498, 501, [["3480.25", "3.0000"]], []),
        depth_frame("ETHUSDT", 502, 503, [["3480.24", "0.7000"]], [["3480.26", "0.0000"]]),
    ]


# -- an independent rebuild, written plainly from Binance's documented algorithm ---------------------------


def plain_rebuild(snapshot: dict[str, Any], frames: Sequence[str], symbol: str) -> tuple[dict[Decimal, Decimal], ...]:
    bids = {Decimal(p): Decimal(q) for p, q in snapshot["bids"]}
    asks = {Decimal(p): Decimal(q) for p, q in snapshot["asks"]}
    last = snapshot["lastUpdateId"]
    first = True
    for text in frames:
        data = json.loads(text)["data"]
        if data.get("e") != "depthUpdate" or data["s"] != symbol or data["u"] <= last:
            continue
        if first:
            assert data["U"] <= last + 1 <= data["u"]
        else:
            assert data["U"] == last + 1
        first = False
        for side, key in ((bids, "b"), (asks, "a")):
            for price, qty in data[key]:
                if Decimal(qty) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = Decimal(qty)
        last = data["u"]
    return bids, asks


class RecordingSink:
    """Rebuilds each instrument's book from what the adapter hands over, and logs the calls."""

    def __init__(self) -> None:
        self.specs: dict[str, InstrumentSpec] = {}
        self.books: dict[str, tuple[dict[int, int], dict[int, int]]] = {}
        self.live: dict[str, bool] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.trades: dict[str, list[Trade]] = {}

    def book(self, instrument_id: str, bids: Sequence[Level], asks: Sequence[Level], time_ns: int) -> None:
        assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
        assert [p for p, _ in asks] == sorted(p for p, _ in asks)
        self.books[instrument_id] = (dict(bids), dict(asks))
        self.live[instrument_id] = True
        self.calls.append(("book", instrument_id, ""))

    def changes(
        self, instrument_id: str, changes: Sequence[LevelChange], trades: Sequence[Trade], time_ns: int
    ) -> None:
        assert self.live.get(instrument_id), "changes before a book"
        assert time_ns > 1_700_000_000_000 * 1_000_000
        bids, asks = self.books[instrument_id]
        for change in changes:
            side = bids if change.side is Side.BID else asks
            if change.size:
                side[change.price] = change.size
            else:
                side.pop(change.price, None)
        self.trades.setdefault(instrument_id, []).extend(trades)
        self.calls.append(("changes", instrument_id, ""))

    def stale(self, instrument_id: str, reason: str) -> None:
        self.live[instrument_id] = False
        self.calls.append(("stale", instrument_id, reason))

    def decimal_book(self, instrument_id: str) -> tuple[dict[Decimal, Decimal], ...]:
        spec = self.specs[instrument_id]
        bids, asks = self.books.get(instrument_id, ({}, {}))
        return tuple({p * spec.tick_size: s * spec.lot_size for p, s in side.items()} for side in (bids, asks))

    def transitions(self, instrument_id: str) -> list[str]:
        """The instrument's books and stales in order (how many changes came between them depends on timing)."""
        return [kind for kind, iid, _ in self.calls if iid == instrument_id and kind != "changes"]


@contextlib.asynccontextmanager
async def running(
    fake: FakeBinance, symbols: list[str], sink: RecordingSink | None = None
) -> AsyncIterator[tuple[RecordingSink, asyncio.Task[None]]]:
    sink = sink or RecordingSink()
    await fake.start()
    task: asyncio.Task[None] | None = None
    try:
        adapter = BinanceAdapter(
            symbols,
            fake.ws_url,
            fake.rest_url,
            reconnect_initial=0.01,
            reconnect_max=0.05,
            resync_initial=0.01,
            resync_max=0.05,
            rng=random.Random(7),
        )
        async with asyncio.timeout(5):
            specs = await adapter.instruments()
        sink.specs = {s.instrument_id: s for s in specs}
        task = asyncio.create_task(adapter.run(sink), name="binance-under-test")
        yield sink, task
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                async with asyncio.timeout(5):
                    await task
        await fake.stop()


def while_running(condition: Callable[[], bool], task: asyncio.Task[None]) -> Callable[[], bool]:
    """``condition``, but an adapter task that has ended fails the wait at once (with its exception, if any)."""

    def check() -> bool:
        if task.done():
            task.result()
            raise AssertionError("the adapter stopped")
        return condition()

    return check


# -- the pure state machine --------------------------------------------------------------------------------


def depth(first: int, final: int, bids: list[list[str]] = [], asks: list[list[str]] = []) -> Any:  # noqa: B006
    return parse_depth(
        {"e": "depthUpdate", "E": 1_700_000_000_000 + final, "U": first, "u": final, "b": bids, "a": asks}
    )


def small_book() -> SymbolBook:
    return SymbolBook("BTCUSDT", TICK, LOT)


SNAPSHOT = parse_snapshot(snap(100, [["10.00", "1.00000"], ["9.99", "2.00000"]], [["10.01", "3.00000"]]))


def test_events_are_buffered_until_the_snapshot_and_old_ones_dropped() -> None:
    book = small_book()
    assert book.on_depth(depth(95, 98, [["9.00", "9"]])) == []  # u <= lastUpdateId: dropped
    assert book.on_depth(depth(99, 100, [["9.50", "9"]])) == []  # u == lastUpdateId: dropped
    assert book.on_depth(depth(101, 103, [["10.00", "0"]], [["10.02", "0.5"]])) == []
    assert book.needs_snapshot
    [out] = book.on_snapshot(SNAPSHOT, now_ns=1)
    assert out == BookOut(((999, 200_000),), ((1001, 300_000), (1002, 50_000)), (1_700_000_000_000 + 103) * 10**6)
    assert book.live and book.update_id == 103


def test_snapshot_in_the_middle_of_an_event_is_applied_from_that_event() -> None:
    book = small_book()
    book.on_depth(depth(99, 102, [["9.98", "1"]]))  # U <= 101 <= u: the first event applied
    book.on_depth(depth(103, 103, [["9.98", "2"]]))
    [out] = book.on_snapshot(SNAPSHOT, now_ns=1)
    assert isinstance(out, BookOut) and (998, 200_000) in out.bids
    assert book.update_id == 103


def test_snapshot_older_than_the_buffer_asks_for_another() -> None:
    book = small_book()
    book.on_depth(depth(105, 107))
    [out] = book.on_snapshot(SNAPSHOT, now_ns=1)  # 101 is missing: U=105 > lastUpdateId + 1
    assert isinstance(out, StaleOut) and "older than the buffered updates" in out.reason
    assert book.needs_snapshot
    [again] = book.on_snapshot(parse_snapshot(snap(106, [["10.00", "1"]], [])), now_ns=1)
    assert isinstance(again, BookOut) and book.update_id == 107


def test_snapshot_first_then_the_first_event_must_straddle_it() -> None:
    book = small_book()
    [out] = book.on_snapshot(SNAPSHOT, now_ns=5)
    assert out == BookOut(((1000, 100_000), (999, 200_000)), ((1001, 300_000),), 5)
    assert book.on_depth(depth(90, 100)) == []  # already in the snapshot
    [changes] = book.on_depth(depth(100, 102, [["10.00", "0"]]))
    assert isinstance(changes, ChangesOut) and changes.changes == (LevelChange(Side.BID, 1000, 0),)
    # an event overlapping the book's update id applies (absolute quantities: the ids it repeats change nothing)
    [overlap] = book.on_depth(depth(102, 104, [["9.99", "4"]]))
    assert isinstance(overlap, ChangesOut) and overlap.changes == (LevelChange(Side.BID, 999, 400_000),)
    assert book.update_id == 104
    [gap] = book.on_depth(depth(106, 107))
    assert isinstance(gap, StaleOut) and "jumped from 104 to 106" in gap.reason


def test_first_event_after_a_snapshot_must_not_skip() -> None:
    book = small_book()
    book.on_snapshot(SNAPSHOT, now_ns=5)
    [gap] = book.on_depth(depth(102, 103))
    assert gap == StaleOut("binance: update ids jumped from 100 to 102; fetching a new snapshot")
    assert book.needs_snapshot


def test_contiguous_events_become_level_changes_and_zero_removes() -> None:
    book = small_book()
    book.on_snapshot(SNAPSHOT, now_ns=5)
    [out] = book.on_depth(depth(101, 101, [["9.99", "0.00000000"], ["1.00", "7"]], [["10.01", "1.5"], ["50.00", "1"]]))
    assert out == ChangesOut(
        (
            LevelChange(Side.BID, 999, 0),
            LevelChange(Side.BID, 100, 700_000),
            LevelChange(Side.ASK, 1001, 150_000),
            LevelChange(Side.ASK, 5000, 100_000),
        ),
        (),
        (1_700_000_000_000 + 101) * 10**6,
    )
    assert book.bids() == ((1000, 100_000), (100, 700_000))  # levels beyond the snapshot are kept
    assert book.asks() == ((1001, 150_000), (5000, 100_000))
    assert book.on_depth(depth(102, 102, [["3.00", "0"]])) != []  # removing an absent level is normal


def test_a_gap_stales_and_the_gap_event_serves_the_next_snapshot() -> None:
    book = small_book()
    book.on_snapshot(SNAPSHOT, now_ns=5)
    book.on_depth(depth(101, 102))
    [gap] = book.on_depth(depth(110, 112, [["9.00", "1"]]))
    assert gap == StaleOut("binance: update ids jumped from 102 to 110; fetching a new snapshot")
    assert book.on_depth(depth(113, 113)) == []  # buffered again
    [out] = book.on_snapshot(parse_snapshot(snap(111, [["10.00", "1"]], [])), now_ns=1)
    assert isinstance(out, BookOut) and out.bids == ((1000, 100_000), (900, 100_000)) and book.update_id == 113


def test_off_grid_values_stale_the_symbol_and_change_nothing() -> None:
    book = small_book()
    [bad_snapshot] = book.on_snapshot(parse_snapshot(snap(100, [["10.005", "1"]], [])), now_ns=1)
    assert isinstance(bad_snapshot, StaleOut) and "BTCUSDT" in bad_snapshot.reason and "10.005" in bad_snapshot.reason
    book.on_snapshot(SNAPSHOT, now_ns=1)
    [bad] = book.on_depth(depth(101, 101, [["9.00", "1"]], [["10.015", "1"]]))
    assert isinstance(bad, StaleOut) and "BTCUSDT" in bad.reason and "more decimals than the unit 0.01" in bad.reason
    assert book.needs_snapshot and book.bids() == ()
    [lot] = SymbolBook("BTCUSDT", TICK, LOT).on_snapshot(parse_snapshot(snap(1, [["1.00", "0.000001"]], [])), 1)
    assert isinstance(lot, StaleOut) and "quantity" in lot.reason


def test_trades_only_when_live_and_the_aggressor_follows_m() -> None:
    book = small_book()
    trade = {"e": "aggTrade", "E": 1_700_000_000_123, "p": "10.01", "q": "0.5", "m": True}
    assert book.on_trade(parse_agg_trade(trade)) == []
    book.on_snapshot(SNAPSHOT, now_ns=1)
    [sold] = book.on_trade(parse_agg_trade(trade))  # buyer is maker: the seller hit the bid
    assert sold == ChangesOut((), (Trade(1001, 50_000, Side.ASK),), 1_700_000_000_123_000_000)
    [bought] = book.on_trade(parse_agg_trade({**trade, "m": False}))
    assert isinstance(bought, ChangesOut) and bought.trades[0].aggressor is Side.BID


@pytest.mark.parametrize(
    "data",
    [
        {"e": "depthUpdate", "E": 1, "U": 1, "b": [], "a": []},
        {"e": "depthUpdate", "E": 1, "U": 1, "u": "2", "b": [], "a": []},
        {"e": "depthUpdate", "E": 1, "U": 3, "u": 2, "b": [], "a": []},
        {"e": "depthUpdate", "E": 1, "U": 1, "u": 2, "b": [["1.0"]], "a": []},
        {"e": "trade", "E": 1, "U": 1, "u": 2, "b": [], "a": []},
    ],
)
def test_malformed_depth_events_are_refused(data: dict[str, Any]) -> None:
    with pytest.raises(MalformedEvent):
        parse_depth(data)


# -- the adapter against the fake server -------------------------------------------------------------------


def live(sink: RecordingSink, *instrument_ids: str) -> WaitFor:
    """A script step: wait until the adapter has given the sink a book of each instrument."""
    return WaitFor(lambda: all(sink.live.get(i, False) for i in instrument_ids))


def fake(sessions: list[list[Step]], snapshots: dict[str, list[dict[str, Any]]], hold: bool = False) -> FakeBinance:
    return FakeBinance(dict(MARKETS), snapshots, sessions, hold_snapshots=hold)


async def test_instruments_from_exchange_info() -> None:
    server = fake([], {})
    async with running(server, ["btcusdt", "ETHUSDT"]) as (sink, _):
        btc, eth = sink.specs["BTC-USDT"], sink.specs["ETH-USDT"]
        # the units are the printed precision (8 decimals); the order filters are kept beside them
        assert (btc.display_name, btc.kind, f"{btc.tick_size:f}", f"{btc.lot_size:f}") == (
            "BTC / USDT (Binance)",
            "crypto",
            "0.00000001",
            "0.00000001",
        )
        assert (str(btc.order_tick_size), str(btc.order_lot_size)) == ("0.01", "0.00001")
        assert (eth.display_name, str(eth.order_lot_size)) == ("ETH / USDT (Binance)", "0.0001")


async def test_unknown_symbol_is_source_unavailable_naming_it() -> None:
    server = fake([], {})
    await server.start()
    try:
        adapter = BinanceAdapter(["BTCUSDT", "DOGEXYZ"], server.ws_url, server.rest_url)
        with pytest.raises(SourceUnavailable, match=r"unknown symbol DOGEXYZ .*-1121"):
            async with asyncio.timeout(5):
                await adapter.instruments()
    finally:
        await server.stop()


async def test_unreachable_rest_is_source_unavailable_naming_the_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = BinanceAdapter(["BTCUSDT"], f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}")
    with pytest.raises(SourceUnavailable, match=rf"cannot reach http://127.0.0.1:{port}/api/v3/exchangeInfo"):
        async with asyncio.timeout(5):
            await adapter.instruments()


async def test_books_equal_an_independent_rebuild_with_a_late_snapshot() -> None:
    btc, eth = btc_frames(), eth_frames()
    sink = RecordingSink()
    both_live = WaitFor(lambda: sink.live.get("BTC-USDT", False) and sink.live.get("ETH-USDT", False))
    script: list[Step] = [btc[0], eth[0], btc[1], btc[2], Release(), both_live, eth[1], *btc[3:]]
    server = fake([script], {"BTCUSDT": [BTC_SNAP], "ETHUSDT": [ETH_SNAP]}, hold=True)
    async with running(server, ["BTCUSDT", "ETHUSDT"], sink) as (sink, task):
        want_btc, want_eth = plain_rebuild(BTC_SNAP, btc, "BTCUSDT"), plain_rebuild(ETH_SNAP, eth, "ETHUSDT")
        await eventually(
            while_running(
                lambda: sink.decimal_book("BTC-USDT") == want_btc and sink.decimal_book("ETH-USDT") == want_eth, task
            ),
            5.0,
            lambda: f"the sink saw {sink.calls}",
        )
        assert Decimal("67300.00") in want_btc[1]  # a level the snapshot did not have
        assert server.ws_paths == [
            "/stream?streams=btcusdt@depth@100ms/btcusdt@aggTrade/ethusdt@depth@100ms/ethusdt@aggTrade"
        ]
        units = 10**8  # the fake prints 8 decimals
        assert sink.trades["BTC-USDT"] == [
            Trade(6725003 * units // 100, 1000 * units // 100_000, Side.ASK),
            Trade(6725001 * units // 100, 20000 * units // 100_000, Side.BID),
        ]
        assert sink.transitions("BTC-USDT") == ["book"] and sink.transitions("ETH-USDT") == ["book"]
        assert server.depth_requests == {"BTCUSDT": 1, "ETHUSDT": 1}


async def test_a_gap_stales_then_a_new_snapshot_rebuilds() -> None:
    after_gap = [
        depth_frame("BTCUSDT", 1040, 1042, [["67249.00", "1.00000"]], []),
        depth_frame("BTCUSDT", 1043, 1044, [["67250.01", "0.10000"]], []),
        depth_frame("BTCUSDT", 1045, 1045, [], [["67251.00", "0"]]),
    ]
    snap2 = snap(1043, [["67250.01", "0.70000"], ["67249.00", "1.00000"]], [["67251.00", "2.00000"]])
    sink = RecordingSink()
    script: list[Step] = [*btc_frames()[:3], live(sink, "BTC-USDT"), after_gap[0], WaitDepth("BTCUSDT", 2)]
    server = fake([[*script, *after_gap[1:]]], {"BTCUSDT": [BTC_SNAP, snap2]})
    async with running(server, ["BTCUSDT"], sink) as (sink, task):
        want = plain_rebuild(snap2, after_gap, "BTCUSDT")
        await eventually(
            while_running(lambda: sink.live.get("BTC-USDT", False) and sink.decimal_book("BTC-USDT") == want, task),
            5.0,
            lambda: f"the sink saw {sink.calls}",
        )
        assert sink.transitions("BTC-USDT") == ["book", "stale", "book"]
        [reason] = [r for kind, _, r in sink.calls if kind == "stale"]
        assert reason == "binance: update ids jumped from 1031 to 1040; fetching a new snapshot"
        assert server.depth_requests == {"BTCUSDT": 2}


async def test_a_dropped_connection_stales_every_symbol_then_rebuilds() -> None:
    sink = RecordingSink()
    first: list[Step] = [*btc_frames()[:3], *eth_frames(), live(sink, "BTC-USDT", "ETH-USDT"), Drop()]
    again = [
        depth_frame("BTCUSDT", 1050, 1052, [["67250.01", "0.90000"]], []),
        depth_frame("ETHUSDT", 510, 512, [], [["3480.26", "2.0000"]]),
        depth_frame("BTCUSDT", 1053, 1053, [["67250.00", "0"]], []),
    ]
    btc2 = snap(1051, [["67250.01", "0.80000"], ["67250.00", "1.00000"]], [["67250.02", "0.31000"]])
    eth2 = snap(511, [["3480.25", "4.1000"]], [["3480.26", "1.0000"]])
    server = fake([first, [*again]], {"BTCUSDT": [BTC_SNAP, btc2], "ETHUSDT": [ETH_SNAP, eth2]})
    async with running(server, ["BTCUSDT", "ETHUSDT"], sink) as (sink, task):
        want_btc, want_eth = plain_rebuild(btc2, again, "BTCUSDT"), plain_rebuild(eth2, again, "ETHUSDT")
        await eventually(
            while_running(
                lambda: sink.decimal_book("BTC-USDT") == want_btc and sink.decimal_book("ETH-USDT") == want_eth, task
            ),
            5.0,
            lambda: f"the sink saw {sink.calls}",
        )
        for instrument in ("BTC-USDT", "ETH-USDT"):
            assert sink.transitions(instrument) == ["book", "stale", "book"]
        reasons = [r for kind, _, r in sink.calls if kind == "stale"]
        assert len(reasons) == 2 and all(r.startswith("binance: connection lost: ") for r in reasons)
        assert all(r.endswith("; reconnecting") for r in reasons)
        assert len(server.ws_paths) == 2 and server.ws_paths[0] == server.ws_paths[1]


async def test_an_off_tick_price_stales_that_symbol_only(caplog: pytest.LogCaptureFixture) -> None:
    off_tick = depth_frame("ETHUSDT", 504, 504, [["3480.255000001", "1.0000"]], [])  # 9 decimals: more than printed
    later = [depth_frame("ETHUSDT", 505, 505, [["3480.24", "0"]], []), *btc_frames()[3:]]
    eth2 = snap(504, [["3480.25", "3.0000"], ["3480.24", "0.7000"]], [["3480.40", "10.0000"]])
    sink = RecordingSink()
    script: list[Step] = [*btc_frames()[:3], *eth_frames(), live(sink, "BTC-USDT", "ETH-USDT"), off_tick]
    script += [WaitDepth("ETHUSDT", 2), live(sink, "ETH-USDT"), *later]
    server = fake([script], {"BTCUSDT": [BTC_SNAP], "ETHUSDT": [ETH_SNAP, eth2]})
    with caplog.at_level(logging.WARNING, logger="feed_server.server.exchanges.binance"):
        async with running(server, ["BTCUSDT", "ETHUSDT"], sink) as (sink, task):
            want_btc, want_eth = plain_rebuild(BTC_SNAP, btc_frames(), "BTCUSDT"), plain_rebuild(eth2, later, "ETHUSDT")
            await eventually(
                while_running(
                    lambda: sink.decimal_book("BTC-USDT") == want_btc and sink.decimal_book("ETH-USDT") == want_eth,
                    task,
                ),
                5.0,
                lambda: f"the sink saw {sink.calls}",
            )
            assert sink.transitions("BTC-USDT") == ["book"]
            assert sink.transitions("ETH-USDT") == ["book", "stale", "book"]
    [line] = [r.getMessage() for r in caplog.records if "3480.255000001" in r.getMessage()]
    assert "ETHUSDT" in line and "more decimals than the unit 0.00000001 holds" in line


async def test_a_malformed_frame_stales_and_resyncs_that_symbol_only(caplog: pytest.LogCaptureFixture) -> None:
    missing_u = json.dumps(
        {
            "stream": "btcusdt@depth@100ms",
            "data": {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 1032, "b": [], "a": []},
        }
    )
    later = [depth_frame("BTCUSDT", 1034, 1035, [["67250.01", "0.30000"]], [])]
    btc2 = snap(1033, [["67250.01", "0.61230"]], [["67250.03", "0.12000"]])
    sink = RecordingSink()
    script: list[Step] = [*btc_frames()[:3], eth_frames()[0], live(sink, "BTC-USDT", "ETH-USDT"), "not json {"]
    script += [missing_u, eth_frames()[1], WaitDepth("BTCUSDT", 2), live(sink, "BTC-USDT"), *later]
    server = fake([script], {"BTCUSDT": [BTC_SNAP, btc2], "ETHUSDT": [ETH_SNAP]})
    with caplog.at_level(logging.WARNING, logger="feed_server.server.exchanges.binance"):
        async with running(server, ["BTCUSDT", "ETHUSDT"], sink) as (sink, task):
            want_btc, want_eth = plain_rebuild(btc2, later, "BTCUSDT"), plain_rebuild(ETH_SNAP, eth_frames(), "ETHUSDT")
            await eventually(
                while_running(
                    lambda: sink.decimal_book("BTC-USDT") == want_btc and sink.decimal_book("ETH-USDT") == want_eth,
                    task,
                ),
                5.0,
                lambda: f"the sink saw {sink.calls}",
            )
            assert sink.transitions("BTC-USDT") == ["book", "stale", "book"]
            assert sink.transitions("ETH-USDT") == ["book"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("not JSON" in m for m in messages)
    assert any("BTCUSDT" in m and "malformed" in m and "'u'" in m for m in messages)


async def test_a_server_shutdown_event_reconnects_at_once() -> None:
    sink = RecordingSink()
    shutdown = json.dumps({"stream": "btcusdt@depth@100ms", "data": {"e": "serverShutdown", "E": 1_700_000_001_000}})
    first: list[Step] = [*btc_frames()[:3], live(sink, "BTC-USDT"), shutdown]
    again = [depth_frame("BTCUSDT", 1050, 1052, [["67250.01", "0.90000"]], [])]
    btc2 = snap(1051, [["67250.01", "0.80000"]], [["67250.02", "0.31000"]])
    server = fake([first, [*again]], {"BTCUSDT": [BTC_SNAP, btc2]})
    async with running(server, ["BTCUSDT"], sink) as (sink, task):
        want = plain_rebuild(btc2, again, "BTCUSDT")
        await eventually(
            while_running(lambda: sink.decimal_book("BTC-USDT") == want, task),
            5.0,
            lambda: f"the sink saw {sink.calls}",
        )
        assert sink.transitions("BTC-USDT") == ["book", "stale", "book"]
        [reason] = [r for kind, _, r in sink.calls if kind == "stale"]
        assert "serverShutdown" in reason and len(server.ws_paths) == 2
