"""The recorder end to end (``python -m feed_server.record`` and ``python -m feed_server`` as subprocesses): what
it records verifies message by message, it stops at --duration, --count, SIGINT, records a restarted feed as a
second session, and refuses bad arguments, bad files and an unreachable feed with one line and exit 1."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from feed_server.record.format import RecordingReader
from tests.record.support import SUMMARY, run_record, start_record, verify
from tests.servers import free_port, start_feed_process, wait_for_health
from tests.waiting import stop_process, wait_until


def test_a_recording_reads_back_and_every_message_verifies(recording: Path) -> None:
    reader = RecordingReader(recording)
    records = list(reader)
    assert reader.truncated_at is None
    assert len(records) > 100
    header = reader.header
    assert header.depth == 100 and header.recorder == "feed_server.record 1"
    assert len(header.instruments) == 7 and all(i.tick_size and i.lot_size for i in header.instruments)
    assert header.session_id == records[0].item.session_id
    books = verify(records)  # contiguous sequences per instrument, checksums and digests all match
    assert list(books) == [header.session_id]
    assert set(books[header.session_id]) == {i.instrument_id for i in header.instruments}
    times = [record.recv_time_ns for record in records]
    assert times == sorted(times) and 2.5e9 < times[-1] - times[0] < 3.5e9


def test_count_stops_after_that_many_items(feed: str, tmp_path: Path) -> None:
    path = tmp_path / "c.mdrec"
    ran = run_record("--address", feed, "--out", str(path), "--count", "40", "--instruments", "AAPL,BTC-USD")
    assert ran.code == 0, ran.err
    assert ran.out.startswith("recorded 40 items (1 session)")
    reader = RecordingReader(path)
    records = list(reader)
    assert len(records) == 40
    assert [i.instrument_id for i in reader.header.instruments] == ["AAPL", "BTC-USD"]
    assert set(verify(records)[reader.header.session_id]) == {"AAPL", "BTC-USD"}


def test_depth_is_recorded_and_the_stream_verifies_at_it(feed: str, tmp_path: Path) -> None:
    path = tmp_path / "d.mdrec"
    ran = run_record("--address", feed, "--out", str(path), "--count", "30", "--depth", "5")
    assert ran.code == 0, ran.err
    reader = RecordingReader(path)
    assert reader.header.depth == 5
    records = list(reader)
    first = records[0].item.messages[0]
    assert len(first.snapshot.bids) <= 5 and len(first.snapshot.asks) <= 5
    verify(records)


def wait_for_a_frame(path: Path) -> None:
    """Wait (bounded) until the recording at ``path`` holds its header and then at least one frame of records."""
    header: list[int] = []

    def grown() -> bool:
        size = path.stat().st_size if path.exists() else 0
        if not header:
            if size:
                header.append(size)  # the preamble and header, written and flushed when the file is opened
            return False
        return size > header[0]

    wait_until(grown, 15.0, f"a frame of records in {path}")


def test_sigint_ends_the_file_cleanly(feed: str, tmp_path: Path) -> None:
    path = tmp_path / "i.mdrec"
    process = start_record("--address", feed, "--out", str(path))
    try:
        wait_for_a_frame(path)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        stop_process(process)
    assert process.returncode == 0, err
    assert err == b""
    assert SUMMARY.match(out.decode())
    reader = RecordingReader(path)
    records = list(reader)
    assert reader.truncated_at is None and records
    verify(records)


def test_a_restarted_feed_is_recorded_as_a_second_session(tmp_path: Path) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    path = tmp_path / "r.mdrec"
    feed = start_feed_process(port, "--seed", "3")
    recorder = None
    try:
        wait_for_health(address, 15.0)
        recorder = start_record("--address", address, "--out", str(path), "--duration", "6")
        wait_for_a_frame(path)  # the first session is on disk
        feed.kill()  # no goodbye on the stream
        stop_process(feed)  # reaps it and closes its pipes
        feed = start_feed_process(port, "--seed", "3")
        wait_for_health(address, 15.0)
        out, err = recorder.communicate(timeout=20)
    finally:
        stop_process(feed)
        if recorder is not None:
            stop_process(recorder)
    assert recorder.returncode == 0, err
    match = SUMMARY.match(out.decode())
    assert match and match[2] == "2", out
    books = verify(RecordingReader(path))  # the new session starts with INITIAL snapshots of every instrument
    assert len(books) == 2
    assert all(len(session) == 7 for session in books.values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "one of the arguments --address --info --export is required"),
        (("--address", "nowhere", "--out", "x.mdrec"), "expected HOST:PORT"),
        (("--address", "127.0.0.1:1"), "--address needs --out"),
        (("--address", "127.0.0.1:1", "--out", "x", "--duration", "1", "--count", "2"), "not allowed with"),
        (("--address", "127.0.0.1:1", "--out", "x", "--depth", "101"), "between 1 and 100"),
        (("--address", "127.0.0.1:1", "--out", "x", "--format", "csv"), "--format does not go with --address"),
        (("--info", "x.mdrec", "--count", "3"), "--count does not go with --info"),
        (("--export", "x.mdrec", "--out", "b.csv"), "--export needs --format csv"),
        (("--export", "x.mdrec", "--format", "json", "--out", "b.csv"), "invalid choice"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_1(args: tuple[str, ...], message: str) -> None:
    ran = run_record(*args)
    assert ran.code == 1
    assert ran.out == ""
    assert len(ran.err.splitlines()) == 1 and message in ran.err, ran.err


def test_an_unreachable_feed_is_one_line_and_exit_1_within_seconds(tmp_path: Path) -> None:
    path = tmp_path / "u.mdrec"
    start = time.monotonic()
    ran = run_record("--address", f"127.0.0.1:{free_port()}", "--out", str(path), within=15)
    assert time.monotonic() - start < 10
    assert ran.code == 1 and ran.out == ""
    assert ran.err.startswith("FeedUnavailable: no feed server at 127.0.0.1:") and len(ran.err.splitlines()) == 1
    assert not path.exists()


def test_an_unknown_instrument_is_one_line_and_exit_1(feed: str, tmp_path: Path) -> None:
    ran = run_record("--address", feed, "--out", str(tmp_path / "n.mdrec"), "--instruments", "AAPL,NOPE")
    assert ran.code == 1
    assert ran.err.startswith("BadRequest: ") and "'NOPE'" in ran.err and len(ran.err.splitlines()) == 1
