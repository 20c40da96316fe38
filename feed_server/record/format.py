"""The recording file format (``.mdrec``): what ``python -m feed_server.record`` writes and the replay reads.

Layout, in order (integers little-endian; the protobuf messages are defined in ``proto/market_data.proto``)::

    magic           8 bytes   b"MDREC\\r\\n\\x1a"
    version         uint32    FORMAT_VERSION (1)
    header length   uint32    N
    header          N bytes   a RecordingHeader (not compressed, so a reader sees it at once)
    frames          ...       zstd frames, one after the other, until the end of the file

Each zstd frame, decompressed, is a run of records, each a varint length (protobuf's base-128 varint) followed
by that many bytes of a ``RecordedItem`` (the receive time and the stream item as the feed sent it). Records never
span two frames, and a frame is written out whole (the writer compresses a frame's records together every
``FRAME_RECORDS`` records, ``FRAME_BYTES`` bytes or ``FRAME_SECONDS`` seconds, and at close), so a file cut short
(a killed recorder, a full disk) loses at most its last, unfinished frame: :class:`RecordingReader` yields every
whole record before the cut and records where it stopped (``truncated_at``, a byte offset in the file).
"""

from __future__ import annotations

import io
import logging
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import zstandard

from feed_server.protocol.errors import MarketDataError
from feed_server.protocol.pb import market_data_pb2 as pb

__all__ = [
    "FORMAT_VERSION",
    "FRAME_BYTES",
    "FRAME_RECORDS",
    "FRAME_SECONDS",
    "MAGIC",
    "BadRecording",
    "RecordingReader",
    "RecordingWriter",
    "encode_record",
]


class BadRecording(MarketDataError):
    """A file is not a recording, has a format version this code cannot read, or is empty."""

logger = logging.getLogger(__name__)

MAGIC = b"MDREC\r\n\x1a"
FORMAT_VERSION = 1
FRAME_RECORDS = 2_000  # a frame is written after this many records,
FRAME_BYTES = 1 << 20  # or this many uncompressed bytes,
FRAME_SECONDS = 1.0  # or when a record arrives this long after the frame's first one
_PREAMBLE = struct.Struct("<8sII")  # magic, version, header length
_MAX_HEADER = 16 << 20
_COMPRESSION_LEVEL = 3


def _varint(value: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative integer."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_record(recv_time_ns: int, item: bytes) -> bytes:
    """One length-prefixed ``RecordedItem`` record, built from a stream item's bytes as received (never parsed:
    the same bytes as ``RecordedItem(recv_time_ns=..., item=SubscribeResponse.FromString(item))`` serialised)."""
    time_field = b"\x08" + _varint(recv_time_ns) if recv_time_ns else b""  # field 1, varint (proto3: 0 is left out)
    body = time_field + b"\x12" + _varint(len(item)) + item  # field 2, length-delimited
    return _varint(len(body)) + body


class RecordingWriter:
    """Writes a recording: the preamble and header at once, then records in zstd frames (see the module
    docstring). ``close()`` writes the last frame; use it as a context manager."""

    def __init__(self, path: Path, header: pb.RecordingHeader) -> None:
        self.path = path
        self._file: BinaryIO = open(path, "wb")  # closed by close()
        header_bytes = header.SerializeToString()
        self._file.write(_PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header_bytes)) + header_bytes)
        self._file.flush()
        self._compressor = zstandard.ZstdCompressor(level=_COMPRESSION_LEVEL)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._frame_started = 0.0
        self.records = 0  # records written (or pending) so far
        self.closed = False

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def write(self, recv_time_ns: int, item: bytes) -> None:
        """Add one stream item (its bytes as received) with its receive time."""
        record = encode_record(recv_time_ns, item)
        if not self._pending:
            self._frame_started = time.monotonic()
        self._pending.append(record)
        self._pending_bytes += len(record)
        self.records += 1
        if (
            len(self._pending) >= FRAME_RECORDS
            or self._pending_bytes >= FRAME_BYTES
            or time.monotonic() - self._frame_started >= FRAME_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        """Write the pending records as one zstd frame (nothing when none is pending)."""
        if not self._pending:
            return
        self._file.write(self._compressor.compress(b"".join(self._pending)))
        self._file.flush()
        self._pending.clear()
        self._pending_bytes = 0

    def close(self) -> None:
        if self.closed:
            return
        self.flush()
        self._file.close()
        self.closed = True


class RecordingReader:
    """Reads a recording: ``header`` at once (BadRecording when the file is not a recording or has another
    version), then ``for record in reader`` yields every whole ``RecordedItem`` in order. A file cut short stops
    at its last whole record: ``truncated_at`` is then the byte offset where the unreadable part starts, and one
    warning says so."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with open(path, "rb") as file:
                preamble = file.read(_PREAMBLE.size)
                if len(preamble) < _PREAMBLE.size or not preamble.startswith(MAGIC):
                    raise BadRecording(f"{path} is not a recording (no {MAGIC[:5].decode()} magic at its start)")
                _, version, header_length = _PREAMBLE.unpack(preamble)
                if version != FORMAT_VERSION:
                    raise BadRecording(
                        f"{path} is a recording of format version {version}; this program reads version "
                        f"{FORMAT_VERSION}"
                    )
                if header_length > _MAX_HEADER:
                    raise BadRecording(f"{path}: its header length ({header_length} bytes) is not credible")
                header_bytes = file.read(header_length)
        except OSError as exc:
            raise BadRecording(f"cannot read {path}: {exc.strerror or exc}") from None
        if len(header_bytes) < header_length:
            raise BadRecording(f"{path} ends inside its header: it holds no recording")
        try:
            self.header = pb.RecordingHeader.FromString(header_bytes)
        except Exception as exc:  # protobuf's DecodeError
            raise BadRecording(f"{path}: its header cannot be read ({exc})") from None
        self.data_offset = _PREAMBLE.size + header_length
        self.truncated_at: int | None = None

    def __iter__(self) -> Iterator[pb.RecordedItem]:
        """Every whole record, in order (the file is read again from the start each time)."""
        self.truncated_at = None
        with open(self.path, "rb") as file:
            file.seek(self.data_offset)
            data = file.read()
        offset = 0  # in `data`: the start of the next frame
        decompressor_factory = zstandard.ZstdDecompressor()
        while offset < len(data):
            try:
                frame_size = zstandard.frame_content_size(data[offset:])
                if frame_size < 0:
                    raise zstandard.ZstdError("a frame without its content size")
                reader = decompressor_factory.decompressobj()
                frame = reader.decompress(data[offset:])
                used = len(data) - offset - len(reader.unused_data)
                if not reader.eof or len(frame) != frame_size:
                    raise zstandard.ZstdError("the frame is cut short")
            except zstandard.ZstdError:
                self._truncated(self.data_offset + offset)
                return
            yield from _records(frame)
            offset += used

    def _truncated(self, at: int) -> None:
        self.truncated_at = at
        logger.warning(
            "%s is cut short at byte %d (a recorder that was killed, or a full disk): the records before it are "
            "all there, the rest is lost",
            self.path,
            at,
        )


def _records(frame: bytes) -> Iterator[pb.RecordedItem]:
    """The records of one decompressed frame (a frame is always written whole, so its records are too)."""
    stream = io.BytesIO(frame)
    read = stream.read
    parse = pb.RecordedItem.FromString
    while True:
        length = 0
        shift = 0
        while True:
            byte = read(1)
            if not byte:
                if shift:
                    raise BadRecording("a record's length is cut short inside a whole frame")
                return
            length |= (byte[0] & 0x7F) << shift
            shift += 7
            if not byte[0] & 0x80:
                break
        body = read(length)
        if len(body) < length:
            raise BadRecording("a record is cut short inside a whole frame")
        yield parse(body)
