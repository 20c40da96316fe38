"""The recording file format: records come back exactly as written, a file cut anywhere gives its whole
records before the cut and one warning, and what is not a recording is refused with one clear error."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.record import format as recording_format
from feed_server.record.format import (
    FORMAT_VERSION,
    MAGIC,
    BadRecording,
    RecordingReader,
    RecordingWriter,
    encode_record,
)

HEADER = pb.RecordingHeader(depth=100, source_address="127.0.0.1:50051", session_id="s1", start_time_ns=123)


def _item(n: int) -> bytes:
    message = pb.BookMessage(instrument_id=f"I{n % 3}", sequence=n, checksum=n * 7919 % 2**32, book_digest=n)
    message.update.changes.add(side=pb.SIDE_BID, price_ticks=10_000 + n, size_lots=n % 5)
    return pb.SubscribeResponse(session_id="s1", messages=[message]).SerializeToString()


def _write(path: Path, count: int) -> list[bytes]:
    items = [_item(n) for n in range(count)]
    with RecordingWriter(path, HEADER) as writer:
        for n, item in enumerate(items):
            writer.write(1_000 + n, item)
    return items


def test_records_come_back_exactly_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recording_format, "FRAME_RECORDS", 37)  # many frames
    path = tmp_path / "s.mdrec"
    items = _write(path, 500)
    reader = RecordingReader(path)
    assert reader.header == HEADER
    records = list(reader)
    assert [r.item.SerializeToString() for r in records] == items
    assert [r.recv_time_ns for r in records] == [1_000 + n for n in range(500)]
    assert reader.truncated_at is None
    assert path.read_bytes().startswith(MAGIC + FORMAT_VERSION.to_bytes(4, "little"))


@pytest.mark.parametrize("recv_time_ns", [0, 1, 1_763_780_000_000_000_000])
def test_a_record_is_the_protobuf_serialisation_of_a_recorded_item(recv_time_ns: int) -> None:
    item = _item(5)
    expected = pb.RecordedItem(recv_time_ns=recv_time_ns, item=pb.SubscribeResponse.FromString(item))
    record = encode_record(recv_time_ns, item)
    body = expected.SerializeToString()
    assert record[-len(body) :] == body and record[0] == len(body)  # a one-byte varint length here


def test_a_file_cut_anywhere_gives_its_whole_records_and_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(recording_format, "FRAME_RECORDS", 50)
    whole = tmp_path / "whole.mdrec"
    items = _write(whole, 400)
    data = whole.read_bytes()
    header_end = RecordingReader(whole).data_offset
    for cut in random.Random(7).sample(range(header_end, len(data)), 25):
        cut_path = tmp_path / "cut.mdrec"
        cut_path.write_bytes(data[:cut])
        caplog.clear()
        reader = RecordingReader(cut_path)
        with caplog.at_level(logging.WARNING):
            records = [r.item.SerializeToString() for r in reader]
        assert records == items[: len(records)]  # a prefix, in order, nothing damaged
        if cut < len(data):
            assert reader.truncated_at is not None and header_end <= reader.truncated_at <= cut
            assert len([r for r in caplog.records if "cut short" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "not a recording"),
        (b"just some text, not a recording at all", "not a recording"),
        (MAGIC + (FORMAT_VERSION + 1).to_bytes(4, "little") + (0).to_bytes(4, "little"), "format version 2"),
        (MAGIC + FORMAT_VERSION.to_bytes(4, "little") + (50).to_bytes(4, "little") + b"abc", "ends inside its header"),
    ],
)
def test_what_is_not_a_readable_recording_is_refused_in_one_line(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "bad.mdrec"
    path.write_bytes(content)
    with pytest.raises(BadRecording, match=words) as info:
        RecordingReader(path)
    assert "\n" not in str(info.value)


def test_a_missing_file_is_a_bad_recording(tmp_path: Path) -> None:
    with pytest.raises(BadRecording, match="cannot read"):
        RecordingReader(tmp_path / "nowhere.mdrec")
