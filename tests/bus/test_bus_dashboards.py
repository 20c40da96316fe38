"""Dashboards on NATS (``python -m dashboard --feed-address nats://...``), all real processes on 127.0.0.1:

- two dashboards on the same publishing feed serve, at every sequence they share with an independent gRPC
  subscriber of that feed, the very book that subscriber rebuilt (every level, as the JSON WebSocket gives it);
- two sharded feeds on one NATS server: one dashboard lists the instruments of both; a shard killed (SIGKILL)
  stales its own instruments within the 2 s watchdog and nothing else, and started again its books come back
  live in the same dashboard process;
- the NATS server killed: every book stale; started again on the same port: every book live again, with no feed
  or dashboard restarted.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack, closing

from websockets.asyncio.client import connect

from feed_server.client.grpc_transport import FeedSubscriber
from feed_server.protocol.book import MAX_DEPTH, Level
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec
from tests.bus.dashboards import PublishingFeed, RestView, dashboard_on
from tests.bus.support import NatsServer, needs_nats
from tests.dashboard.conftest import Dashboard
from tests.dashboard.ws_helpers import SPECS, recv_json
from tests.servers import feed_process
from tests.waiting import wait_until

pytestmark = needs_nats

ALL_IDS = [spec.instrument_id for spec in DEFAULT_INSTRUMENTS]
SHARD_A = ["AAPL", "MSFT", "EUR-USD"]
SHARD_B = ["USD-JPY", "BTC-USD", "ETH-USD", "ES-Z6"]
WATCHDOG = 2.0  # the dashboard's heartbeat timeout: an instrument silent this long is stale
MARGIN = 0.5  # the watchdog's 0.1 s period, the REST round trips and a busy 2-core machine

JsonLevels = list[list[float]]
Book = tuple[JsonLevels, JsonLevels]  # (bids, asks) as the WebSocket's JSON gives them


# ---------------------------------------------------------------------------------------------------------------
# 1. Two dashboards against a gRPC subscriber, sequence by sequence
# ---------------------------------------------------------------------------------------------------------------
COMPARED_IDS = ["AAPL", "MSFT", "BTC-USD"]
RECORD_SECONDS = 6.0


def as_json(levels: list[Level], spec: InstrumentSpec) -> JsonLevels:
    """Levels in ticks and lots as the JSON API writes them: the floats nearest the exact decimals."""
    return [[float(price * spec.tick_size), float(size * spec.lot_size)] for price, size in levels]


async def record_websocket(dashboard: Dashboard, instrument_id: str, until: float, into: dict[int, Book]) -> None:
    """Every live book the dashboard's WebSocket (full depth) sends for one instrument until loop time ``until``,
    by sequence."""
    loop = asyncio.get_running_loop()
    # The bound leaves 30 s past the window for the opening and closing handshakes: under a full CI run's load
    # (two dashboards, NATS, six full-depth streams on two cores) 10 s was once not enough.
    async with (
        asyncio.timeout(until - loop.time() + 30.0),
        connect(dashboard.ws(instrument_id, f"depth={MAX_DEPTH}")) as ws,
    ):
        while (left := until - loop.time()) > 0:
            try:
                data = await recv_json(ws, left)
            except TimeoutError:
                break
            assert data["type"] == "book", data
            if not data["stale"]:
                into[data["sequence"]] = (data["bids"], data["asks"])


async def test_two_dashboards_serve_the_book_a_grpc_subscriber_rebuilt_at_every_shared_sequence(
    nats_server: NatsServer,
) -> None:
    truth: dict[str, dict[int, tuple[list[Level], list[Level]]]] = {iid: {} for iid in COMPARED_IDS}
    served: list[dict[str, dict[int, Book]]] = [{iid: {} for iid in COMPARED_IDS} for _ in range(2)]
    feed_args = ("--seed", "11", "--rate", "80", "--instruments", ",".join(COMPARED_IDS), "--publish", nats_server.url)
    with feed_process(*feed_args) as address, ExitStack() as stack:
        subscriber = FeedSubscriber(address, COMPARED_IDS, depth=MAX_DEPTH)

        def record(instrument_id: str, trades: object) -> None:
            entry = subscriber.books[instrument_id]
            if not entry.stale and entry.book.sequence is not None:
                truth[instrument_id][entry.book.sequence] = (entry.book.bids(), entry.book.asks())

        subscriber.add_listener(record)
        task = asyncio.create_task(subscriber.run(), name="grpc truth subscriber")
        try:
            dashboards = [await asyncio.to_thread(stack.enter_context, dashboard_on(nats_server.url)) for _ in range(2)]
            await subscriber.wait_live(15.0)
            loop = asyncio.get_running_loop()
            until = loop.time() + RECORD_SECONDS
            async with asyncio.timeout(RECORD_SECONDS + 60.0):
                await asyncio.gather(
                    *(
                        record_websocket(dashboard, iid, until, served[n][iid])
                        for n, dashboard in enumerate(dashboards)
                        for iid in COMPARED_IDS
                    )
                )
        finally:
            task.cancel()
            await asyncio.wait([task], timeout=5.0)
        assert not task.done() or task.cancelled(), "the gRPC subscriber stopped by itself"

    for n, by_instrument in enumerate(served):
        total = 0
        for iid in COMPARED_IDS:
            spec, books, known = SPECS[iid], by_instrument[iid], truth[iid]
            assert known, f"the gRPC subscriber saw no {iid}"
            low, high = min(known), max(known)
            # The gRPC subscriber applied every message it was sent: a live book the dashboard served within that
            # range is at a sequence the feed published.
            unknown = sorted(s for s in books if low <= s <= high and s not in known)
            assert not unknown, f"dashboard {n} served {iid} at sequences the feed never had: {unknown[:10]}"
            shared = sorted(set(books) & set(known))
            assert len(shared) >= 100, f"dashboard {n}: only {len(shared)} sequences of {iid} shared"
            for sequence in shared:
                bids, asks = known[sequence]
                got_bids, got_asks = books[sequence]
                assert got_bids == as_json(bids, spec), f"dashboard {n}, {iid} bids at sequence {sequence}"
                assert got_asks == as_json(asks, spec), f"dashboard {n}, {iid} asks at sequence {sequence}"
            total += len(shared)
        assert total >= 500, f"dashboard {n}: only {total} sequences shared"
    for iid in COMPARED_IDS:  # and so the dashboards agree with each other wherever both sent a book
        both = set(served[0][iid]) & set(served[1][iid])
        assert len(both) >= 50, f"the two dashboards share only {len(both)} sequences of {iid}"
        assert all(served[0][iid][s] == served[1][iid][s] for s in both)


# ---------------------------------------------------------------------------------------------------------------
# 2. Sharded feeds: one shard killed and started again
# ---------------------------------------------------------------------------------------------------------------
def all_live(view: RestView, instrument_ids: list[str]) -> bool:
    return not any(view.stale(instrument_ids).values())


def test_a_killed_shard_stales_only_its_own_instruments_and_comes_back_live(nats_server: NatsServer) -> None:
    shards = [
        PublishingFeed(nats_server.url, ("--seed", "21", "--rate", "50", "--instruments", ",".join(SHARD_A))),
        PublishingFeed(nats_server.url, ("--seed", "22", "--rate", "50", "--instruments", ",".join(SHARD_B))),
    ]
    try:
        for shard in shards:
            shard.start()
        with dashboard_on(nats_server.url) as dashboard, closing(RestView(dashboard)) as view:
            pid = dashboard.process.pid
            wait_until(lambda: sorted(view.listed()) == sorted(ALL_IDS), 15.0, "both shards listed")
            wait_until(lambda: all_live(view, ALL_IDS), 15.0, "every book live")

            shards[1].kill()
            killed = time.monotonic()
            staled: float | None = None
            while (elapsed := time.monotonic() - killed) < WATCHDOG + MARGIN + 1.0:
                states = view.stale(ALL_IDS)
                assert not any(states[iid] for iid in SHARD_A), f"{elapsed:.2f} s after the kill: {states}"
                if staled is None and all(states[iid] for iid in SHARD_B):
                    staled = elapsed
                time.sleep(0.05)  # sampling a fixed window: shard A must stay live all through it
            assert staled is not None, "the killed shard's instruments never all went stale"
            assert staled <= WATCHDOG + MARGIN, f"the killed shard's instruments went stale after {staled:.2f} s"

            shards[1].start()  # the same arguments, the same gRPC port, a new session
            wait_until(lambda: all_live(view, SHARD_B), 15.0, "the restarted shard's books live")
            assert all_live(view, ALL_IDS)
            assert sorted(view.listed()) == sorted(ALL_IDS)
            assert dashboard.process.pid == pid and dashboard.process.poll() is None, "the dashboard restarted"
    finally:
        for shard in shards:
            shard.stop()


# ---------------------------------------------------------------------------------------------------------------
# 3. The NATS server killed, then started again on the same port
# ---------------------------------------------------------------------------------------------------------------
def test_a_restarted_nats_server_brings_every_book_back_live(nats_server: NatsServer) -> None:
    feed = PublishingFeed(nats_server.url, ("--seed", "31", "--rate", "50"))
    try:
        feed.start()
        with dashboard_on(nats_server.url) as dashboard, closing(RestView(dashboard)) as view:
            processes = [feed.process, dashboard.process]
            wait_until(lambda: all_live(view, ALL_IDS), 15.0, "every book live")

            assert nats_server.process is not None
            nats_server.process.kill()
            nats_server.process.wait(5.0)
            nats_server.process = None
            wait_until(lambda: all(view.stale(ALL_IDS).values()), WATCHDOG + MARGIN, "every book stale")
            time.sleep(1.0)  # down for a while: the books stay stale, the clients keep trying
            assert all(view.stale(ALL_IDS).values())

            nats_server.start()
            wait_until(lambda: all_live(view, ALL_IDS), 10.0, "every book live again")
            assert [feed.process, dashboard.process] == processes, "a feed or the dashboard was restarted"
            assert all(process.poll() is None for process in processes), "a feed or the dashboard exited"
    finally:
        feed.stop()
