"""Helpers of the recording tests: the recorder's command line as a subprocess, and a recording checked against
the books it describes."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from feed_server.protocol.book import OrderBook
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.wire import apply_message
from feed_server.record.format import RecordingReader
from tests.servers import REPO_ROOT, child_env

RECORD = [sys.executable, "-m", "feed_server.record"]
SUMMARY = re.compile(r"^recorded (\d+) items \((\d+) sessions?(, \d+ reconnects)?\), (\d+) bytes in [\d.]+ s to ")


@dataclass
class Ran:
    code: int
    out: str
    err: str


def run_record(*args: str, within: float = 20.0) -> Ran:
    """``python -m feed_server.record *args`` to completion (killed, and the test failed, after ``within`` s)."""
    done = subprocess.run(
        [*RECORD, *args], cwd=REPO_ROOT, env=child_env(), capture_output=True, timeout=within, check=False
    )
    return Ran(done.returncode, done.stdout.decode(), done.stderr.decode())


def start_record(*args: str) -> subprocess.Popen[bytes]:
    """The recorder as a background process (the caller ends it, in a ``finally``)."""
    return subprocess.Popen(
        [*RECORD, *args], cwd=REPO_ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def verify(records: Iterable[pb.RecordedItem]) -> dict[str, dict[str, OrderBook]]:
    """Apply every recorded message to a book of its session and instrument (apply_message verifies the sequence,
    checksum and digest of each); each session's first message per instrument is an INITIAL snapshot, later
    snapshots are RESYNC ones. The books by session."""
    books: dict[str, dict[str, OrderBook]] = {}
    for record in records:
        session = books.setdefault(record.item.session_id, {})
        for message in record.item.messages:
            book = session.get(message.instrument_id)
            if book is None:
                assert message.WhichOneof("body") == "snapshot", message
                assert message.snapshot.reason == pb.SNAPSHOT_REASON_INITIAL
                book = session[message.instrument_id] = OrderBook(message.instrument_id)
            elif message.WhichOneof("body") == "snapshot":
                assert message.snapshot.reason == pb.SNAPSHOT_REASON_RESYNC
            apply_message(book, message)  # raises SequenceGap, ChecksumMismatch, ...
    return books


def messages_of(path: Path) -> list[pb.BookMessage]:
    return [message for record in RecordingReader(path) for message in record.item.messages]
