"""What a recording holds (``--info``) and its books as CSV (``--export --format csv``).

- :func:`summarise` reads a recording once into a :class:`RecordingInfo` (the header, the time span, the sessions,
  per instrument the message, level change, trade, snapshot and heartbeat counts and the first and last
  sequence); :func:`info_text` words it.
- :func:`export_csv` writes one row per level change and one per snapshot level
  (``instrument_id,sequence,event_time_ns,is_snapshot,side,price,size``) and the trades to ``<out>.trades.csv``
  (``instrument_id,sequence,event_time_ns,price,size,aggressor``), prices and sizes as exact decimals.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from feed_server.protocol.book import Side
from feed_server.protocol.pb import market_data_pb2 as pb
from feed_server.protocol.units import SpecFormat, aggressor_name
from feed_server.protocol.wire import instrument_from_pb
from feed_server.record.format import FORMAT_VERSION, BadRecording, RecordingReader

__all__ = [
    "BOOK_COLUMNS",
    "TRADE_COLUMNS",
    "ExportSummary",
    "InstrumentCounts",
    "RecordingInfo",
    "export_csv",
    "info_text",
    "summarise",
    "trades_path",
]

BOOK_COLUMNS = ("instrument_id", "sequence", "event_time_ns", "is_snapshot", "side", "price", "size")
TRADE_COLUMNS = ("instrument_id", "sequence", "event_time_ns", "price", "size", "aggressor")
_SIDE_NAMES = {pb.SIDE_BID: "bid", pb.SIDE_ASK: "ask"}
_AGGRESSORS = {pb.SIDE_BID: aggressor_name(Side.BID), pb.SIDE_ASK: aggressor_name(Side.ASK)}


@dataclass
class InstrumentCounts:
    messages: int = 0
    changes: int = 0  # level changes in updates
    trades: int = 0
    snapshots: int = 0
    heartbeats: int = 0
    first_sequence: int | None = None
    last_sequence: int | None = None


@dataclass
class RecordingInfo:
    path: Path
    header: pb.RecordingHeader
    records: int = 0
    first_recv_ns: int | None = None
    last_recv_ns: int | None = None
    sessions: dict[str, int] = field(default_factory=dict)  # session id -> items, in the order first seen
    instruments: dict[str, InstrumentCounts] = field(default_factory=dict)  # the header's first, then others
    truncated_at: int | None = None


def summarise(path: Path) -> RecordingInfo:
    """Read the whole recording once (BadRecording when it is not one)."""
    reader = RecordingReader(path)
    info = RecordingInfo(path, reader.header)
    counts = info.instruments
    for instrument in reader.header.instruments:
        counts[instrument.instrument_id] = InstrumentCounts()
    for record in reader:
        info.records += 1
        if info.first_recv_ns is None:
            info.first_recv_ns = record.recv_time_ns
        info.last_recv_ns = record.recv_time_ns
        session = record.item.session_id
        info.sessions[session] = info.sessions.get(session, 0) + 1
        for message in record.item.messages:
            entry = counts.get(message.instrument_id)
            if entry is None:
                entry = counts[message.instrument_id] = InstrumentCounts()
            entry.messages += 1
            body = message.WhichOneof("body")
            if body == "update":
                entry.changes += len(message.update.changes)
                entry.trades += len(message.update.trades)
            elif body == "snapshot":
                entry.snapshots += 1
            elif body == "heartbeat":
                entry.heartbeats += 1
            if entry.first_sequence is None:
                entry.first_sequence = message.sequence
            entry.last_sequence = message.sequence
    info.truncated_at = reader.truncated_at
    return info


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def info_text(info: RecordingInfo) -> str:
    """The ``--info`` report."""
    header = info.header
    lines = [
        f"recording   {info.path} (format {FORMAT_VERSION}, written by {header.recorder or 'unknown'})",
        f"source      {header.source_address or '-'}, session {header.session_id or '-'}, depth {header.depth}",
        f"started     {_iso(header.start_time_ns)}",
    ]
    if info.first_recv_ns is None or info.last_recv_ns is None:
        lines.append("records     0 (an empty recording)")
    else:
        seconds = (info.last_recv_ns - info.first_recv_ns) / 1e9
        lines.append(
            f"records     {info.records} items, received {_iso(info.first_recv_ns)} to {_iso(info.last_recv_ns)} "
            f"({seconds:.3f} s)"
        )
    if info.truncated_at is not None:
        lines.append(f"cut short   at byte {info.truncated_at}: the records after it are lost")
    sessions = ", ".join(f"{sid or '-'} ({items} items)" for sid, items in info.sessions.items())
    lines.append(f"sessions    {len(info.sessions)}{': ' + sessions if sessions else ''}")
    specs = {message.instrument_id: message for message in header.instruments}
    table = [("instrument", "tick", "lot", "messages", "changes", "trades", "snapshots", "heartbeats", "first seq",
              "last seq")]  # fmt: skip
    for iid, c in info.instruments.items():
        spec = specs.get(iid)
        table.append(
            (
                iid,
                spec.tick_size if spec else "?",
                spec.lot_size if spec else "?",
                str(c.messages),
                str(c.changes),
                str(c.trades),
                str(c.snapshots),
                str(c.heartbeats),
                "-" if c.first_sequence is None else str(c.first_sequence),
                "-" if c.last_sequence is None else str(c.last_sequence),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def trades_path(out: Path) -> Path:
    """Where the trades of an export to ``out`` go: ``<out>.trades.csv`` (``book.csv`` -> ``book.trades.csv``)."""
    stem = out.name[: -len(".csv")] if out.name.endswith(".csv") else out.name
    return out.with_name(stem + ".trades.csv")


@dataclass
class ExportSummary:
    book_rows: int = 0
    trade_rows: int = 0
    trades_path: Path = Path()
    truncated_at: int | None = None


def export_csv(path: Path, out: Path) -> ExportSummary:
    """Write the recording's book rows to ``out`` and its trades to :func:`trades_path` (BadRecording when the
    file is not a recording, holds no records, or names an instrument its header does not list)."""
    reader = RecordingReader(path)
    formats: dict[str, SpecFormat] = {}
    for instrument in reader.header.instruments:
        try:
            formats[instrument.instrument_id] = SpecFormat.of(instrument_from_pb(instrument))
        except ValueError as exc:
            raise BadRecording(f"{path}: {exc}") from None
    summary = ExportSummary(trades_path=trades_path(out))
    records = 0
    with open(out, "w", newline="") as book_file, open(summary.trades_path, "w", newline="") as trade_file:
        books = csv.writer(book_file)
        trades = csv.writer(trade_file)
        books.writerow(BOOK_COLUMNS)
        trades.writerow(TRADE_COLUMNS)
        for record in reader:
            records += 1
            for message in record.item.messages:
                iid, seq, ns = message.instrument_id, message.sequence, message.event_time_ns
                fmt = formats.get(iid)
                if fmt is None:
                    raise BadRecording(f"{path}: instrument {iid!r} is not in the recording's header")
                price, size = fmt.price.text, fmt.size.text
                body = message.WhichOneof("body")
                if body == "update":
                    for change in message.update.changes:
                        side = _SIDE_NAMES.get(change.side, str(change.side))
                        books.writerow((iid, seq, ns, 0, side, price(change.price_ticks), size(change.size_lots)))
                    summary.book_rows += len(message.update.changes)
                    for trade in message.update.trades:
                        aggressor = _AGGRESSORS.get(trade.aggressor, str(trade.aggressor))
                        trades.writerow((iid, seq, ns, price(trade.price_ticks), size(trade.size_lots), aggressor))
                    summary.trade_rows += len(message.update.trades)
                elif body == "snapshot":
                    snap = message.snapshot
                    rows = [(iid, seq, ns, 1, "bid", price(lv.price_ticks), size(lv.size_lots)) for lv in snap.bids]
                    rows += [(iid, seq, ns, 1, "ask", price(lv.price_ticks), size(lv.size_lots)) for lv in snap.asks]
                    if not rows:  # an empty book: one row without a level, so the old book is still discarded
                        rows = [(iid, seq, ns, 1, "", "", "")]
                    books.writerows(rows)
                    summary.book_rows += len(rows)
    summary.truncated_at = reader.truncated_at
    if not records:
        out.unlink()
        summary.trades_path.unlink()
        raise BadRecording(f"{path} is an empty recording (a header and no records): nothing to export")
    return summary
