"""The CLI client on NATS end to end (``python -m feed_server.client --address nats://...`` as a subprocess): the
instrument list, verified lines of one instrument, and one-line errors with exit code 1."""

from __future__ import annotations

import asyncio

from feed_server.protocol.instruments import DEFAULT_INSTRUMENTS
from tests.bus.support import NatsServer, needs_nats
from tests.client.test_client_cli import LINE
from tests.client.test_client_cli import run_client as run_cli
from tests.servers import free_port, running_feed_server

pytestmark = needs_nats


async def run_client(*args: str, within: float = 15.0) -> tuple[int, str, str, float]:
    """The CLI run to completion (tests.client.test_client_cli's runner), and the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    code, out, err = await run_cli(*args, within=within)
    return code, out, err, loop.time() - start


async def test_list_over_nats_prints_every_instrument(nats_server: NatsServer) -> None:
    async with running_feed_server(rate=20.0, publish_url=nats_server.url):
        code, out, err, _ = await run_client("--address", nats_server.url, "--list")
    assert code == 0 and err == "", err
    assert [line.split()[0] for line in out.splitlines()] == [spec.instrument_id for spec in DEFAULT_INSTRUMENTS]


async def test_count_over_nats_prints_verified_lines_and_exits_0(nats_server: NatsServer) -> None:
    async with running_feed_server(seed=4, rate=100.0, publish_url=nats_server.url):
        code, out, err, _ = await run_client("--address", nats_server.url, "--instrument", "BTC-USD", "--count", "3")
    assert code == 0 and err == "", err
    lines = out.splitlines()
    assert len(lines) == 3
    matches = [LINE.match(line) for line in lines]
    assert all(m and m["iid"] == "BTC-USD" and m["status"] == "checksum=ok" for m in matches), lines
    sequences = [int(m["seq"]) for m in matches if m]
    assert sequences == list(range(sequences[0], sequences[0] + 3))


async def test_an_unreachable_nats_is_one_error_line_and_exit_1() -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    for args in (["--instrument", "AAPL", "--count", "3"], ["--list"]):
        code, out, err, took = await run_client("--address", url, *args)
        assert code == 1 and out == "", err
        assert len(err.splitlines()) == 1 and err.startswith("error: FeedUnavailable: "), err
        assert f"cannot connect to the NATS server at {url}" in err
        assert took < 8.0


async def test_no_feed_on_nats_is_one_error_line_and_exit_1(nats_server: NatsServer) -> None:
    for args in (["--instrument", "AAPL", "--count", "3"], ["--list"]):
        code, out, err, _ = await run_client("--address", nats_server.url, *args)
        assert code == 1 and out == "", err
        assert len(err.splitlines()) == 1 and "no feed publishes" in err, err


async def test_an_unknown_instrument_over_nats_is_one_error_line_and_exit_1(nats_server: NatsServer) -> None:
    async with running_feed_server(rate=20.0, publish_url=nats_server.url):
        code, out, err, _ = await run_client("--address", nats_server.url, "--instrument", "XYZ", "--count", "3")
    assert code == 1 and out == ""
    assert err == "error: UnknownInstrument: unknown instrument id 'XYZ'\n"


async def test_a_nats_address_without_a_port_is_a_usage_error() -> None:
    code, out, err, _ = await run_client("--address", "nats://", "--instrument", "AAPL")
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m feed_server.client: error: "), lines
    assert "expected nats://HOST:PORT" in lines[0] and "Traceback" not in err
