"""The CLI client end to end (``python -m feed_server.client`` as a subprocess) and its table rendering."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from decimal import Decimal

import pytest

from feed_server.client.book_text import render_table, summary_line
from feed_server.client.sync import InstrumentBook
from feed_server.protocol.book import OrderBook, Side, Trade
from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec
from feed_server.protocol.units import format_mid
from feed_server.server.feed import Feed, FeedOptions
from tests.servers import REPO_ROOT, child_env, free_port, running_feed_server, start_feed_process, wait_for_health
from tests.waiting import stop_process

CLIENT = [sys.executable, "-m", "feed_server.client"]
LINE = re.compile(
    r"^(?P<iid>\S+) seq=(?P<seq>\d+) bid=\S+ @ \S+ ask=\S+ @ \S+ spread=\S+ mid=\S+ last=.* "
    r"(?P<status>checksum=ok|STALE)$"
)


async def run_client(*args: str, within: float = 15.0, stdout: int | None = None) -> tuple[int, str, str]:
    """Run the CLI to completion (killed after ``within`` seconds); returns (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *CLIENT,
        *args,
        cwd=REPO_ROOT,
        env=child_env(),
        stdout=asyncio.subprocess.PIPE if stdout is None else stdout,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(within):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, (out or b"").decode(), err.decode()


async def test_count_prints_that_many_verified_lines_and_exits_0() -> None:
    async with running_feed_server(seed=4, rate=100.0) as server:
        code, out, err = await run_client("--address", server.address, "--instrument", "BTC-USD", "--count", "25")
    assert code == 0, err
    assert err == ""
    lines = out.splitlines()
    assert len(lines) == 25
    sequences = []
    for line in lines:
        match = LINE.match(line)
        assert match, line
        assert match["iid"] == "BTC-USD" and match["status"] == "checksum=ok"
        sequences.append(int(match["seq"]))
    assert sequences == list(range(sequences[0], sequences[0] + 25))  # every message, in order
    assert re.search(r"bid=\d+\.\d{4} @ \d+\.\d ", lines[0])  # BTC-USD: lot 0.0001, tick 0.5


async def test_duration_exits_0_after_that_time() -> None:
    async with running_feed_server(rate=50.0) as server:
        loop = asyncio.get_running_loop()
        start = loop.time()
        code, out, err = await run_client("--address", server.address, "--instrument", "EUR-USD", "--duration", "1")
        took = loop.time() - start
    assert code == 0, err
    assert 1.0 <= took < 6.0
    assert len(out.splitlines()) > 10 and all(LINE.match(line) for line in out.splitlines())


async def test_server_down_gives_one_error_line_and_exit_1() -> None:
    port = free_port()
    code, out, err = await run_client("--address", f"127.0.0.1:{port}", "--instrument", "AAPL", "--count", "3")
    assert code == 1
    assert out == ""
    assert err == f"error: FeedUnavailable: no feed server at 127.0.0.1:{port} (connection refused)\n"
    code, out, err = await run_client("--address", f"127.0.0.1:{port}", "--list")
    assert code == 1 and out == "" and len(err.splitlines()) == 1 and err.startswith("error: FeedUnavailable: ")


async def test_unknown_instrument_gives_one_error_line_and_exit_1() -> None:
    async with running_feed_server(rate=20.0) as server:
        code, out, err = await run_client("--address", server.address, "--instrument", "XYZ", "--count", "3")
    assert code == 1
    assert out == ""
    assert err == "error: UnknownInstrument: unknown instrument id 'XYZ'\n"


async def test_list_prints_every_instrument() -> None:
    async with running_feed_server(rate=20.0) as server:
        code, out, err = await run_client("--address", server.address, "--list")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == [spec.instrument_id for spec in DEFAULT_INSTRUMENTS]
    eur = next(line for line in lines if line.startswith("EUR-USD"))
    assert "Euro / US Dollar" in eur and "fx" in eur and "0.00001" in eur and "1000" in eur


async def test_once_live_it_survives_a_feed_restart_and_exits_0_at_the_end_of_its_duration() -> None:
    """A real feed process, killed and restarted on the same port while a piped client runs with --duration:
    the client shows the book STALE, reconnects by itself, prints live lines again and exits 0 at the end."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    feeds = [start_feed_process(port, "--seed", "1", "--rate", "50")]
    process = None
    try:
        await asyncio.to_thread(wait_for_health, address, 20)
        process = await asyncio.create_subprocess_exec(
            *CLIENT,
            "--address",
            address,
            "--instrument",
            "AAPL",
            "--duration",
            "20",
            cwd=REPO_ROOT,
            env=child_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        before: list[str] = []
        async with asyncio.timeout(10):
            while not before or not before[-1].endswith("checksum=ok"):
                before.append((await process.stdout.readline()).decode().rstrip("\n"))
        feeds[0].kill()  # no goodbye on the stream
        await asyncio.to_thread(feeds[0].wait, 10)
        async with asyncio.timeout(10):
            while not before[-1].endswith("STALE"):
                line = (await process.stdout.readline()).decode()
                assert line, "the client ended when the feed died"
                before.append(line.rstrip("\n"))
        await asyncio.sleep(1.0)  # a few refused reconnections
        assert process.returncode is None, "the client gave up"
        feeds.append(start_feed_process(port, "--seed", "1", "--rate", "50"))
        async with asyncio.timeout(30):
            out, err = await process.communicate()
    finally:
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        for feed in feeds:
            await asyncio.to_thread(stop_process, feed)
    assert process.returncode == 0, err.decode()
    after = out.decode().splitlines()
    assert all(LINE.match(line) for line in before + after), before + after
    assert any(line.endswith("checksum=ok") for line in after), "no live line after the restart"
    errors = err.decode()
    assert "Traceback" not in errors and "error:" not in errors, errors
    assert "reconnecting" in errors  # the reason, on stderr


async def test_an_instrument_the_restarted_feed_dropped_is_shown_stale_and_retried() -> None:
    """Live on a feed with AAPL; the feed restarts without it: STALE, the client keeps trying (unknown_instrument is
    reported once), and when the feed has it again the book is live again."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    first = Feed(FeedOptions(host="127.0.0.1", port=port, seed=1, rate=50.0))
    await first.start()
    servers = [first]
    process = await asyncio.create_subprocess_exec(
        *CLIENT,
        "--address",
        address,
        "--instrument",
        "AAPL",
        "--duration",
        "25",
        cwd=REPO_ROOT,
        env=child_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        async with asyncio.timeout(10):
            await process.stdout.readline()
        await first.stop(grace=0.1)
        msft = [spec for spec in DEFAULT_INSTRUMENTS if spec.instrument_id == "MSFT"]
        without = Feed(FeedOptions(host="127.0.0.1", port=port, seed=1, rate=50.0, instruments=msft))
        await without.start()
        servers.append(without)
        async with asyncio.timeout(15):
            while b"unknown_instrument" not in (logged := await process.stderr.readline()):
                assert logged, "the client ended"
        assert process.returncode is None
        await without.stop(grace=0.1)
        again = Feed(FeedOptions(host="127.0.0.1", port=port, seed=2, rate=50.0))
        await again.start()
        servers.append(again)
        lines: list[str] = []
        async with asyncio.timeout(20):
            while not lines or not lines[-1].endswith("checksum=ok") or "STALE" not in "".join(lines):
                line = (await process.stdout.readline()).decode()
                assert line, "the client ended"
                lines.append(line.rstrip("\n"))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for server in servers:
            await server.stop(grace=0.1)


async def test_ctrl_c_exits_quietly() -> None:
    async with running_feed_server(rate=50.0) as server:
        process = await asyncio.create_subprocess_exec(
            *CLIENT,
            "--address",
            server.address,
            "--instrument",
            "MSFT",
            cwd=REPO_ROOT,
            env=child_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            async with asyncio.timeout(10):
                await process.stdout.readline()
            process.send_signal(signal.SIGINT)
            async with asyncio.timeout(10):
                _, err = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode in (0, 130)
    assert b"Traceback" not in err and err == b""


async def test_faults_are_repaired_by_the_cli() -> None:
    async with running_feed_server(seed=2, rate=300.0, fault_rate=0.05) as server:
        code, out, err = await run_client(
            "--address", server.address, "--instrument", "ETH-USD", "--count", "200", within=40
        )
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) >= 2
    assert all(LINE.match(line) for line in lines)
    assert any(line.endswith("STALE") for line in lines)  # a fault was shown as stale, not as a book
    assert lines[-1].endswith("checksum=ok")
    warnings = [line for line in err.splitlines() if "resynchronising" in line]
    assert warnings and all("ETH-USD" in line for line in warnings)


async def test_on_a_terminal_the_table_is_redrawn_in_place() -> None:
    async with running_feed_server(rate=100.0) as server:
        leader, follower = os.openpty()
        try:
            process = await asyncio.create_subprocess_exec(
                *CLIENT,
                "--address",
                server.address,
                "--instrument",
                "ES-Z6",
                "--depth",
                "5",
                "--count",
                "30",
                cwd=REPO_ROOT,
                env=child_env(),
                stdout=follower,
                stderr=asyncio.subprocess.PIPE,
            )
            os.close(follower)
            follower = -1
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            chunks = []
            for _ in range(1000):  # bounded: read what the client wrote to the terminal
                try:
                    chunk = os.read(leader, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(leader)
            if follower >= 0:
                os.close(follower)
    assert process.returncode == 0
    text = b"".join(chunks).decode()
    assert "\x1b[H" in text and "\x1b[2J" in text  # cursor home: redrawn in place
    last = text.rsplit("\x1b[H", 1)[1]
    assert "ES-Z6" in last and "BID SIZE" in last and "checksum ok" in last
    assert re.search(r"\d+\.\d\d \| \d+\.\d\d", last)  # ES-Z6 prices, tick 0.25


def test_table_rendering() -> None:
    spec = InstrumentSpec("X", "Example", "equity", Decimal("0.25"), Decimal("0.5"))
    book = OrderBook("X", 10)
    book.apply_snapshot(7, [(400, 3), (399, 1)], [(402, 10)])
    entry = InstrumentBook(spec, book, stale=False)
    entry.last_trade = Trade(401, 2, Side.BID)
    lines = render_table(entry, 5)
    assert lines[0] == "X  Example  seq 7  [checksum ok]"
    assert lines[1] == "spread 0.50 (2 ticks)  mid 100.25  last 1.0 @ 100.25 (buy)"
    assert lines[4].split() == ["1.5", "100.00", "|", "100.50", "5.0"]
    assert lines[5].split() == ["0.5", "99.75", "|"]
    assert summary_line(entry) == (
        "X seq=7 bid=1.5 @ 100.00 ask=5.0 @ 100.50 spread=0.50 mid=100.25 last=1.0 @ 100.25 (buy) checksum=ok"
    )
    entry.stale = True
    assert summary_line(entry).endswith(" STALE") and "[STALE]" in render_table(entry, 5)[0]
    entry.stale_reason = "feed connection lost: no message from 127.0.0.1:50051 for 2 s"
    assert render_table(entry, 5)[0] == (
        "X  Example  seq 7  [STALE: feed connection lost: no message from 127.0.0.1:50051 for 2 s]"
    )
    assert summary_line(entry).endswith(" STALE")  # piped lines keep their shape; the reason goes to stderr
    assert format_mid(spec, 400, 401) == "100.125"
    assert format_mid(spec, 400, 402) == "100.25"


@pytest.mark.parametrize(
    "args",
    [
        ("--instrument", "AAPL", "--depth", "500"),
        ("--instrument", "AAPL", "--count", "-3"),
        ("--instrument", "AAPL", "--list"),
        ("--instrument", "AAPL", "--bogus"),
        ("--address", "no-port-here", "--list"),
        (),
    ],
)
async def test_bad_arguments_give_one_error_line_and_exit_1(args: tuple[str, ...]) -> None:
    code, out, err = await run_client(*args)
    assert code == 1
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("python -m feed_server.client: error: "), err
