"""The page ``/`` with NiceGUI's simulated user, against a real feed server process.

The feed runs as its own process (``page_feed`` in page_fixtures.py) and the app in dashboard/main.py reads
its address from DASHBOARD_FEED_ADDRESS; the bridge's subscriber task really runs inside the test's loop.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any, cast

import pytest
from nicegui import app, ui
from nicegui.testing import User

from dashboard.bridge import FeedBridge
from dashboard.ladder import group_levels, grouping_label, grouping_options, ladder_rows
from dashboard.pages import BookPage
from dashboard.parts import parts_of
from feed_server.client.sync import InstrumentBook
from feed_server.protocol.book import Side
from feed_server.protocol.checksum import compute_checksum
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec
from tests.dashboard.page_fixtures import PAGE_FEED_RATE, page_feed  # noqa: F401  (page_feed is a fixture)
from tests.servers import free_port, start_feed_process, wait_for_health
from tests.waiting import eventually, stop_process

SPECS = {spec.instrument_id: spec for spec in DEFAULT_INSTRUMENTS}
Rows = list[dict[str, Any]]

pytestmark = pytest.mark.usefixtures("page_feed")


def rows_of(user: User, marker: str) -> Rows:
    tables = user.find(marker=marker).elements
    assert len(tables) == 1
    table = next(iter(tables))
    assert isinstance(table, ui.table)
    return list(table.rows)


def text_of(user: User, marker: str) -> str:
    labels = user.find(marker=marker).elements
    assert len(labels) == 1
    label = next(iter(labels))
    assert isinstance(label, ui.label)
    return str(label.text)


def book_is_shown(user: User) -> bool:
    return len(rows_of(user, "bids")) > 0 and len(rows_of(user, "asks")) > 0


def assert_book_of(spec: InstrumentSpec, bids: Rows, asks: Rows) -> None:
    """Rows are the instrument's: formatted to its tick and lot, best first, near its price, cumulative."""
    assert len(bids) == 15 and len(asks) == 15
    for rows in (bids, asks):
        cumulative = Decimal(0)
        for row in rows:
            price, size, total = Decimal(row["price"]), Decimal(row["size"]), Decimal(row["total"])
            assert row["price"] == f"{price:.{spec.price_decimals}f}"
            assert row["size"] == f"{size:.{spec.size_decimals}f}"
            assert price % spec.tick_size == 0 and size % spec.lot_size == 0 and size > 0
            assert abs(price - spec.start_price) < spec.start_price * Decimal("0.2"), (spec.instrument_id, price)
            cumulative += size
            assert total == cumulative
    bid_prices = [Decimal(row["price"]) for row in bids]
    ask_prices = [Decimal(row["price"]) for row in asks]
    assert bid_prices == sorted(bid_prices, reverse=True) and len(set(bid_prices)) == 15
    assert ask_prices == sorted(ask_prices) and len(set(ask_prices)) == 15
    assert bid_prices[0] < ask_prices[0]


def units(text: str, step: Decimal) -> int:
    """A shown price (size) as an integer number of ticks (lots); fails if it is not a multiple of the step."""
    count, remainder = divmod(Decimal(text), step)
    assert remainder == 0, f"{text} is not a multiple of {step}"
    return int(count)


def assert_checksum_shown_matches_rows(user: User, spec: InstrumentSpec) -> None:
    """The checksum the page shows is the one of the top 10 rows it shows, read at one moment (the page refreshes
    between the test's awaits, never during this synchronous read)."""
    assert text_of(user, "status") == "LIVE"
    levels = [
        [(units(row["price"], spec.tick_size), units(row["size"], spec.lot_size)) for row in rows_of(user, side)]
        for side in ("bids", "asks")
    ]
    assert compute_checksum(levels[0][:10], levels[1][:10]) == int(text_of(user, "checksum"))


def banner_reason(user: User) -> str | None:
    """The banner's text while it is shown, None while it is hidden (the simulated user finds visible elements
    only)."""
    try:
        user.find(marker="banner")
    except AssertionError:
        return None
    return text_of(user, "reason")


def select_of(user: User) -> ui.select:
    select = next(iter(user.find(marker="instrument").elements))
    assert isinstance(select, ui.select)
    return select


async def open_page(user: User) -> None:
    await user.open("/")
    await eventually(lambda: book_is_shown(user) and text_of(user, "status") == "LIVE", 10.0)


async def choose(user: User, spec: InstrumentSpec) -> None:
    user.find(marker="instrument").click()
    user.find(f"{spec.instrument_id} - {spec.display_name}").click()


async def test_page_shows_the_first_instruments_book(user: User) -> None:
    await open_page(user)
    aapl = SPECS["AAPL"]
    select = next(iter(user.find(marker="instrument").elements))
    assert isinstance(select, ui.select)
    assert select.value == "AAPL"
    assert isinstance(select.options, dict)
    assert list(select.options.values()) == [f"{s.instrument_id} - {s.display_name}" for s in DEFAULT_INSTRUMENTS]
    assert_book_of(aapl, rows_of(user, "bids"), rows_of(user, "asks"))
    assert int(text_of(user, "sequence")) > 0
    assert banner_reason(user) is None
    # The checksum shown is the top 10 rows' shown, at several moments of a live book.
    for _ in range(5):
        await eventually(lambda: text_of(user, "status") == "LIVE", 10.0)
        assert_checksum_shown_matches_rows(user, aapl)
        await asyncio.sleep(0.15)  # the next check at a later moment of the book (the point: several moments)
    best_bid, best_ask = Decimal(rows_of(user, "bids")[0]["price"]), Decimal(rows_of(user, "asks")[0]["price"])
    assert text_of(user, "spread").endswith("ticks)") or text_of(user, "spread").endswith("tick)")
    assert best_bid < Decimal(text_of(user, "mid")) < best_ask or best_ask - best_bid == aapl.tick_size
    await user.should_see(marker="status", content="LIVE")
    # The tape fills with AAPL trades, newest first.
    await eventually(lambda: len(rows_of(user, "trades")) > 0, 10.0)
    trade = rows_of(user, "trades")[0]
    assert trade["side"] in {"BUY", "SELL"}
    assert Decimal(trade["price"]) % aapl.tick_size == 0
    assert text_of(user, "last_trade").endswith(("BUY", "SELL"))


async def test_switching_instrument_shows_its_book_at_once(user: User) -> None:
    await open_page(user)
    eth = SPECS["ETH-USD"]
    await choose(user, eth)
    # No waiting: the switch itself shows the new book.
    assert_book_of(eth, rows_of(user, "bids"), rows_of(user, "asks"))
    assert_checksum_shown_matches_rows(user, eth)
    btc = SPECS["BTC-USD"]
    await choose(user, btc)
    assert_book_of(btc, rows_of(user, "bids"), rows_of(user, "asks"))
    assert_checksum_shown_matches_rows(user, btc)


async def test_two_users_see_different_instruments(create_user: Callable[[], User]) -> None:
    first, second = create_user(), create_user()
    await open_page(first)
    await open_page(second)
    await choose(second, SPECS["USD-JPY"])
    await asyncio.sleep(0.5)  # several refreshes of both pages
    assert_book_of(SPECS["AAPL"], rows_of(first, "bids"), rows_of(first, "asks"))
    assert_book_of(SPECS["USD-JPY"], rows_of(second, "bids"), rows_of(second, "asks"))


async def test_refresh_is_steady_and_not_per_message(user: User) -> None:
    """The feed sends far more than 8 messages/s per instrument; the page changes at about 8 Hz."""
    await open_page(user)
    seen: list[str] = []
    started = time.monotonic()
    async with asyncio.timeout(5.0):
        while time.monotonic() - started < 2.0:
            text = text_of(user, "sequence")
            if not seen or seen[-1] != text:
                seen.append(text)
            await asyncio.sleep(0.005)  # sampling a fixed 2 s window: what the page shows during it is measured
    sequences = [int(text) for text in seen]
    messages = sequences[-1] - sequences[0]
    refreshes = len(sequences) - 1
    assert messages > 3 * refreshes, (messages, refreshes)  # many messages per refresh
    assert 8 <= refreshes <= 18, refreshes  # 8 Hz over 2 s (4 Hz at least on a loaded CI machine)
    assert float(text_of(user, "rate")) > 20


@pytest.fixture
def restartable_feed() -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A feed process of this test's own (the app is pointed at it); the test may kill and restart it."""
    port = free_port()
    processes = [start_feed_process(port, "--seed", "3", "--rate", "50")]
    previous = os.environ["DASHBOARD_FEED_ADDRESS"]
    try:
        wait_for_health(f"127.0.0.1:{port}", 15.0)
        os.environ["DASHBOARD_FEED_ADDRESS"] = f"127.0.0.1:{port}"
        yield port, processes
    finally:
        os.environ["DASHBOARD_FEED_ADDRESS"] = previous
        for process in processes:
            stop_process(process)


async def test_lost_feed_shows_reconnecting_and_stale_then_recovers(
    restartable_feed: tuple[int, list[subprocess.Popen[bytes]]], user: User
) -> None:
    port, processes = restartable_feed
    await open_page(user)
    area = next(iter(user.find(marker="book_area").elements))
    assert "grayscale" not in area.classes
    assert banner_reason(user) is None
    processes[0].kill()
    processes[0].wait(5.0)
    # The watchdog notices within its 2 s heartbeat timeout; the last book stays visible but greyed, and the
    # banner says why.
    await eventually(lambda: text_of(user, "status") != "LIVE", 5.0)
    assert text_of(user, "status") in {"RECONNECTING", "CONNECTING", "STALE"}
    assert "grayscale" in area.classes and "opacity-40" in area.classes
    assert_book_of(SPECS["AAPL"], rows_of(user, "bids"), rows_of(user, "asks"))
    await eventually(lambda: banner_reason(user) is not None, 1.0)
    reason = banner_reason(user)
    assert reason is not None and "\n" not in reason
    # While the feed stays away the reason names it (unreachable at its address).
    await eventually(lambda: f"127.0.0.1:{port}" in (banner_reason(user) or ""), 5.0)
    # A restarted server (sequences from 1 again) makes the page live again without any action.
    processes.append(start_feed_process(port, "--seed", "4", "--rate", "50"))
    await eventually(lambda: text_of(user, "status") == "LIVE", 20.0)
    assert "grayscale" not in area.classes
    assert banner_reason(user) is None
    assert_book_of(SPECS["AAPL"], rows_of(user, "bids"), rows_of(user, "asks"))


def option_ids(user: User) -> list[str]:
    options = select_of(user).options
    assert isinstance(options, dict)
    return list(options)


async def test_dropdown_follows_the_feeds_instruments(
    restartable_feed: tuple[int, list[subprocess.Popen[bytes]]], user: User
) -> None:
    """A feed restarted with fewer instruments: the dropped ones leave the dropdown (a tab showing one says so);
    restarted with all of them, they come back (and the tab shows its instrument again)."""
    port, processes = restartable_feed
    await open_page(user)
    es = SPECS["ES-Z6"]
    await choose(user, es)
    await eventually(lambda: text_of(user, "status") == "LIVE", 10.0)
    processes[0].kill()
    processes[0].wait(5.0)
    processes.append(start_feed_process(port, "--seed", "4", "--rate", "50", "--instruments", "AAPL,MSFT"))
    await eventually(lambda: option_ids(user) == ["AAPL", "MSFT"], 20.0)
    await eventually(lambda: rows_of(user, "bids") == [] and rows_of(user, "asks") == [], 2.0)
    assert select_of(user).value is None
    assert text_of(user, "status") != "LIVE"
    # Once the new feed streams (until then the banner names the connection's problem), the banner says why.
    await eventually(lambda: "no longer lists ES-Z6" in (banner_reason(user) or ""), 10.0)
    assert select_of(user).value is None and rows_of(user, "bids") == []
    # Another instrument of the new list is live at once.
    msft = SPECS["MSFT"]
    await choose(user, msft)
    await eventually(lambda: text_of(user, "status") == "LIVE", 10.0)
    assert banner_reason(user) is None
    assert_book_of(msft, rows_of(user, "bids"), rows_of(user, "asks"))
    assert_checksum_shown_matches_rows(user, msft)
    # Every instrument again: the list is the feed's whole list, and the tab keeps MSFT.
    processes[-1].kill()
    processes[-1].wait(5.0)
    processes.append(start_feed_process(port, "--seed", "5", "--rate", "50"))
    await eventually(lambda: option_ids(user) == list(SPECS), 20.0)
    await eventually(lambda: text_of(user, "status") == "LIVE", 10.0)
    assert select_of(user).value == "MSFT"
    await choose(user, es)
    await eventually(lambda: text_of(user, "status") == "LIVE", 10.0)
    assert_book_of(es, rows_of(user, "bids"), rows_of(user, "asks"))


# ----------------------------------------------------------------- links, grouping, overview, dark mode


async def test_link_opens_the_named_instrument(user: User) -> None:
    await user.open("/?instrument=ETH-USD")
    await eventually(lambda: book_is_shown(user) and text_of(user, "status") == "LIVE", 10.0)
    assert select_of(user).value == "ETH-USD"
    assert_book_of(SPECS["ETH-USD"], rows_of(user, "bids"), rows_of(user, "asks"))
    assert_checksum_shown_matches_rows(user, SPECS["ETH-USD"])
    assert user.notify.messages == []


async def test_unknown_link_notifies_and_shows_the_first_instrument(user: User) -> None:
    await user.open("/?instrument=NOPE-USD")
    await eventually(lambda: book_is_shown(user) and text_of(user, "status") == "LIVE", 10.0)
    await user.should_see("Unknown instrument 'NOPE-USD'")
    assert select_of(user).value == "AAPL"
    assert_book_of(SPECS["AAPL"], rows_of(user, "bids"), rows_of(user, "asks"))


class ListLater:
    """The app's bridge, but with no instrument list until ``release()`` (a dashboard that has just started)."""

    def __init__(self, bridge: FeedBridge) -> None:
        self._bridge = bridge
        self.released = False

    def release(self) -> None:
        self.released = True

    def instruments(self) -> list[InstrumentSpec]:
        return self._bridge.instruments() if self.released else []

    def listed(self) -> Mapping[str, InstrumentSpec]:
        return self._bridge.listed() if self.released else {}

    def book(self, instrument_id: str) -> InstrumentBook | None:
        return self._bridge.book(instrument_id) if self.released else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bridge, name)


async def test_link_waits_for_the_feeds_list(user: User) -> None:
    """Before the feed has listed its instruments a link's id is not called unknown; once listed it is shown."""
    holder: list[ListLater] = []

    @ui.page("/test-link-waits")
    def link_page() -> None:
        holder.append(ListLater(parts_of(app).bridge))
        BookPage(cast(FeedBridge, holder[0]), parts_of(app).history, "MSFT")

    await user.open("/test-link-waits")
    await eventually(lambda: bool(parts_of(app).bridge.listed()), 10.0)
    await asyncio.sleep(0.3)  # several refreshes without a list
    assert rows_of(user, "bids") == []
    assert "to list its instruments" in (banner_reason(user) or "")
    holder[0].release()
    await eventually(lambda: book_is_shown(user) and text_of(user, "status") == "LIVE", 10.0)
    assert select_of(user).value == "MSFT"
    assert_book_of(SPECS["MSFT"], rows_of(user, "bids"), rows_of(user, "asks"))
    assert user.notify.messages == []


def grouping_of(user: User) -> ui.select:
    select = next(iter(user.find(marker="grouping").elements))
    assert isinstance(select, ui.select)
    return select


def assert_grouped(spec: InstrumentSpec, group: int, bids: Rows, asks: Rows) -> None:
    """Grouped rows: prices on the group's grid, one row per group, best first, cumulative sizes."""
    step = spec.tick_size * group
    for rows, descending in ((bids, True), (asks, False)):
        assert rows
        prices = [Decimal(row["price"]) for row in rows]
        assert all(price % step == 0 for price in prices), prices
        assert prices == sorted(prices, reverse=descending) and len(set(prices)) == len(prices)
        cumulative = Decimal(0)
        for row in rows:
            cumulative += Decimal(row["size"])
            assert Decimal(row["total"]) == cumulative
    assert Decimal(bids[0]["price"]) < Decimal(asks[0]["price"]) + step


def assert_bars(bids: Rows, asks: Rows) -> None:
    """Each bar is its size relative to the largest size shown on either side (in whole percent, rounded up)."""
    rows = bids + asks
    largest = max(Decimal(row["size"]) for row in rows)
    for row in rows:
        assert 0 < row["bar"] <= 100
        assert abs(Decimal(row["bar"]) - Decimal(row["size"]) * 100 / largest) < 1
    assert max(row["bar"] for row in rows) == 100


async def test_grouping_aggregates_the_levels_shown_not_the_book(user: User) -> None:
    await open_page(user)
    aapl = SPECS["AAPL"]
    assert grouping_of(user).options == {1: "0.01", 10: "0.10", 100: "1.00"}
    assert_bars(rows_of(user, "bids"), rows_of(user, "asks"))
    grouping_of(user).value = 10
    bids, asks = rows_of(user, "bids"), rows_of(user, "asks")
    assert_grouped(aapl, 10, bids, asks)
    assert_bars(bids, asks)
    checksum = text_of(user, "checksum")
    assert checksum.endswith(" (book; levels shown grouped by 0.10)"), checksum
    # The number is the book's checksum, not one of the grouped rows.
    item = parts_of(app).bridge.book("AAPL")
    assert item is not None and checksum.split()[0] == str(item.book.checksum())
    await asyncio.sleep(0.3)  # several refreshes: the grouping must hold through them
    assert_grouped(aapl, 10, rows_of(user, "bids"), rows_of(user, "asks"))
    # The grouping is per tab and follows the instrument's price units.
    es = SPECS["ES-Z6"]
    await choose(user, es)
    assert grouping_of(user).options == {1: "0.25", 10: "2.50", 100: "25.00"}
    grouping_of(user).value = 100
    assert_grouped(es, 100, rows_of(user, "bids"), rows_of(user, "asks"))
    assert text_of(user, "checksum").endswith("grouped by 25.00)")
    grouping_of(user).value = 1
    await eventually(lambda: text_of(user, "status") == "LIVE", 10.0)
    assert_book_of(es, rows_of(user, "bids"), rows_of(user, "asks"))
    assert_checksum_shown_matches_rows(user, es)


async def test_overview_lists_every_instrument_and_opens_a_book(user: User) -> None:
    await user.open("/overview")

    def all_live() -> bool:
        rows = rows_of(user, "overview")
        return len(rows) == len(SPECS) and all(row["state"] == "LIVE" and row["bid"] != "-" for row in rows)

    await eventually(all_live, 10.0)
    rows = rows_of(user, "overview")
    assert [row["instrument"] for row in rows] == list(SPECS)
    for row in rows:
        spec = SPECS[row["instrument"]]
        bid, ask = Decimal(row["bid"]), Decimal(row["ask"])
        assert bid < ask and bid % spec.tick_size == 0 and ask % spec.tick_size == 0
        assert row["spread"].endswith(("tick)", "ticks)"))
        # Updates per second: a number, at most a few times the feed's order events (room for bursts, heartbeats).
        assert 0 <= float(row["rate"]) <= 5 * float(PAGE_FEED_RATE), row
    await eventually(lambda: all(float(row["rate"]) > 0 for row in rows_of(user, "overview")), 10.0)
    assert user.find(marker="page_link").elements  # the header links to the book page
    btc = next(row for row in rows_of(user, "overview") if row["instrument"] == "BTC-USD")
    user.find(marker="overview").trigger("rowClick", [{}, btc, 4])
    await eventually(lambda: shown_instrument(user) == "BTC-USD", 10.0)
    await eventually(lambda: book_is_shown(user) and text_of(user, "status") == "LIVE", 10.0)
    assert_book_of(SPECS["BTC-USD"], rows_of(user, "bids"), rows_of(user, "asks"))


def shown_instrument(user: User) -> str | None:
    """The book page's instrument, None while another page is shown."""
    try:
        return cast(str | None, select_of(user).value)
    except AssertionError:
        return None


def dark_value(user: User) -> bool:
    element = next(iter(user.find(marker="dark").elements))
    assert isinstance(element, ui.dark_mode)
    return bool(element.value)


async def test_dark_mode_is_remembered_across_pages(user: User) -> None:
    await open_page(user)
    assert dark_value(user) is False
    user.find(marker="dark_mode").click()
    assert dark_value(user) is True
    await user.open("/overview")
    assert dark_value(user) is True
    await user.open("/")
    assert dark_value(user) is True
    user.find(marker="dark_mode").click()
    await user.open("/")
    assert dark_value(user) is False


def test_group_levels_rounds_bids_down_and_asks_up() -> None:
    bids = [(18957, 1), (18951, 2), (18950, 4), (18949, 8)]
    asks = [(18958, 1), (18960, 2), (18961, 4)]
    assert group_levels(bids, 10, Side.BID) == [(18950, 7), (18940, 8)]
    assert group_levels(asks, 10, Side.ASK) == [(18960, 3), (18970, 4)]
    assert group_levels(bids, 1, Side.BID) == bids
    assert grouping_options(SPECS["BTC-USD"]) == {1: "0.5", 10: "5.0", 100: "50.0"}
    assert grouping_label(SPECS["EUR-USD"], 100) == "0.00100"
    rows = ladder_rows(SPECS["AAPL"], [(18950, 3), (18949, 12)], 12)
    assert [row["bar"] for row in rows] == [25, 100]
