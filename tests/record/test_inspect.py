"""``--info`` and ``--export --format csv`` end to end: the counts match what the file holds, and the CSV rows
rebuild, row by row, books whose checksums equal the recorded ones."""

from __future__ import annotations

import csv
import itertools
from decimal import Decimal
from pathlib import Path

from feed_server.protocol.checksum import CHECKSUM_LEVELS, compute_checksum
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.record.format import RecordingReader, RecordingWriter
from feed_server.record.inspect import BOOK_COLUMNS, TRADE_COLUMNS, trades_path
from tests.record.support import messages_of, run_record


def test_info_prints_the_header_and_counts_matching_the_file(recording: Path) -> None:
    ran = run_record("--info", str(recording))
    assert ran.code == 0 and ran.err == "", ran.err
    reader = RecordingReader(recording)
    records = list(reader)
    lines = ran.out.splitlines()
    assert f"session {reader.header.session_id}, depth 100" in ran.out
    assert f"records     {len(records)} items, received 20" in ran.out
    assert f"sessions    1: {reader.header.session_id} ({len(records)} items)" in ran.out
    table = lines[lines.index(next(line for line in lines if line.strip().startswith("instrument"))) + 1 :]
    rows = {row.split()[0]: row.split()[1:] for row in table}
    assert list(rows) == [i.instrument_id for i in reader.header.instruments]
    for instrument in reader.header.instruments:
        messages = [m for r in records for m in r.item.messages if m.instrument_id == instrument.instrument_id]
        updates = [m.update for m in messages if m.WhichOneof("body") == "update"]
        expected = [
            instrument.tick_size,
            instrument.lot_size,
            len(messages),
            sum(len(u.changes) for u in updates),
            sum(len(u.trades) for u in updates),
            sum(m.WhichOneof("body") == "snapshot" for m in messages),
            sum(m.WhichOneof("body") == "heartbeat" for m in messages),
            messages[0].sequence,
            messages[-1].sequence,
        ]
        assert rows[instrument.instrument_id] == [str(value) for value in expected]


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    return rows[0], rows[1:]


def test_the_csv_export_rebuilds_books_with_the_recorded_checksums(recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "book.csv"
    ran = run_record("--export", str(recording), "--format", "csv", "--out", str(out))
    assert ran.code == 0 and ran.err == "", ran.err
    assert trades_path(out) == tmp_path / "book.trades.csv"
    columns, rows = _read(out)
    assert tuple(columns) == BOOK_COLUMNS
    header = RecordingReader(recording).header
    ticks = {i.instrument_id: Decimal(i.tick_size) for i in header.instruments}
    lots = {i.instrument_id: Decimal(i.lot_size) for i in header.instruments}
    # The messages that give rows (heartbeats and updates without a change give none), in file order.
    messages = [
        m
        for m in messages_of(recording)
        if m.WhichOneof("body") == "snapshot" or (m.WhichOneof("body") == "update" and m.update.changes)
    ]
    groups = [list(group) for _, group in itertools.groupby(rows, key=lambda row: tuple(row[:4]))]
    assert len(groups) == len(messages)
    books: dict[str, tuple[dict[int, int], dict[int, int]]] = {}
    for group, message in zip(groups, messages, strict=True):
        iid, sequence, event_time_ns, is_snapshot = group[0][:4]
        assert (iid, int(sequence), int(event_time_ns)) == (
            message.instrument_id,
            message.sequence,
            message.event_time_ns,
        )
        assert is_snapshot == ("1" if message.WhichOneof("body") == "snapshot" else "0")
        if is_snapshot == "1":
            books[iid] = ({}, {})  # a snapshot's rows: the old book is discarded
        bids, asks = books[iid]
        for *_, side, price, size in group:
            price_ticks, size_lots = Decimal(price) / ticks[iid], Decimal(size) / lots[iid]
            assert price_ticks == int(price_ticks) and size_lots == int(size_lots), (price, size)
            levels = bids if side == "bid" else asks
            assert side in ("bid", "ask")
            if size_lots:
                levels[int(price_ticks)] = int(size_lots)
            else:
                del levels[int(price_ticks)]  # size 0 removes a level the book has
        top_bids = sorted(bids.items(), reverse=True)[:CHECKSUM_LEVELS]
        top_asks = sorted(asks.items())[:CHECKSUM_LEVELS]
        assert compute_checksum(top_bids, top_asks) == message.checksum, (iid, sequence)
    assert set(books) == set(ticks)


def test_the_trades_export_has_every_recorded_trade(recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "book.csv"
    ran = run_record("--export", str(recording), "--format", "csv", "--out", str(out))
    assert ran.code == 0, ran.err
    columns, rows = _read(tmp_path / "book.trades.csv")
    assert tuple(columns) == TRADE_COLUMNS
    lots = {i.instrument_id: Decimal(i.lot_size) for i in RecordingReader(recording).header.instruments}
    ticks = {i.instrument_id: Decimal(i.tick_size) for i in RecordingReader(recording).header.instruments}
    expected = [
        (m.instrument_id, m.sequence, m.event_time_ns, t.price_ticks, t.size_lots, t.aggressor)
        for m in messages_of(recording)
        if m.WhichOneof("body") == "update"
        for t in m.update.trades
    ]
    got = [
        (
            iid,
            int(seq),
            int(ns),
            int(Decimal(price) / ticks[iid]),
            int(Decimal(size) / lots[iid]),
            pb.SIDE_BID if aggressor == "buy" else pb.SIDE_ASK,
        )
        for iid, seq, ns, price, size, aggressor in rows
    ]
    assert expected and got == expected
    assert {row[5] for row in rows} == {"buy", "sell"}
    assert f"{len(rows)} trades to" in ran.out


def _empty_recording(path: Path) -> None:
    header = pb.RecordingHeader(
        instruments=[pb.Instrument(instrument_id="AAPL", tick_size="0.01", lot_size="1")],
        depth=100,
        source_address="127.0.0.1:50051",
        session_id="s1",
        start_time_ns=1_764_000_000_000_000_000,
        recorder="feed_server.record 1",
    )
    RecordingWriter(path, header).close()


def test_an_empty_recording_is_described_but_not_exported(tmp_path: Path) -> None:
    path = tmp_path / "empty.mdrec"
    _empty_recording(path)
    ran = run_record("--info", str(path))
    assert ran.code == 0, ran.err
    assert "records     0 (an empty recording)" in ran.out
    assert "started     2025-11-24T16:00:00.000Z" in ran.out
    out = tmp_path / "e.csv"
    ran = run_record("--export", str(path), "--format", "csv", "--out", str(out))
    assert ran.code == 1 and ran.out == ""
    assert ran.err.startswith("BadRecording: ") and "empty recording" in ran.err and len(ran.err.splitlines()) == 1
    assert not out.exists() and not trades_path(out).exists()


def test_a_file_that_is_not_a_recording_is_one_line_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "junk.mdrec"
    path.write_bytes(b"not a recording at all")
    for args in (("--info", str(path)), ("--export", str(path), "--format", "csv", "--out", str(tmp_path / "j.csv"))):
        ran = run_record(*args)
        assert ran.code == 1 and ran.out == ""
        assert ran.err.startswith("BadRecording: ") and "is not a recording" in ran.err
        assert len(ran.err.splitlines()) == 1
    ran = run_record("--info", str(tmp_path / "missing.mdrec"))
    assert ran.code == 1 and ran.err.startswith("BadRecording: cannot read") and len(ran.err.splitlines()) == 1


def test_info_on_a_cut_file_says_where_it_stops(recording: Path, tmp_path: Path) -> None:
    data = recording.read_bytes()
    path = tmp_path / "cut.mdrec"
    path.write_bytes(data[: len(data) - 10])
    ran = run_record("--info", str(path))
    assert ran.code == 0
    assert "cut short   at byte " in ran.out
    assert ran.err.count("cut short at byte") == 1  # the reader's one warning
