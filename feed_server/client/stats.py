"""What a subscriber counts: messages applied, faults by kind (also per instrument), resyncs, reconnects."""

from __future__ import annotations

from dataclasses import dataclass, field

from feed_server.protocol.errors import (
    BookError,
    ChecksumMismatch,
    CrossedBook,
    DigestMismatch,
    SequenceGap,
    SnapshotMissing,
)

__all__ = ["FAULT_REASONS", "SubscriberStats", "fault_reason"]

FAULT_REASONS = ("gap", "snapshot_missing", "checksum", "digest", "crossed", "invalid")
"""Every value :func:`fault_reason` returns."""


def fault_reason(fault: BookError) -> str:
    """A fault's kind as a short label (one of FAULT_REASONS): what made its book resynchronise."""
    if isinstance(fault, SnapshotMissing):  # before InvalidMessage, its base
        return "snapshot_missing"
    if isinstance(fault, SequenceGap):
        return "gap"
    if isinstance(fault, ChecksumMismatch):
        return "checksum"
    if isinstance(fault, DigestMismatch):
        return "digest"
    if isinstance(fault, CrossedBook):
        return "crossed"
    return "invalid"


@dataclass
class SubscriberStats:
    """Counters since the subscriber was created."""

    messages: int = 0  # messages applied to a book
    duplicates: int = 0  # messages ignored because their sequence was already applied
    gaps: int = 0  # sequence gaps detected (including updates seen before any snapshot)
    checksum_errors: int = 0
    digest_errors: int = 0  # the whole book did not match a message's book digest
    crossed: int = 0
    invalid: int = 0  # malformed messages
    resyncs: int = 0  # instruments made whole again by a snapshot after a fault
    snapshot_requests: int = 0  # GetSnapshot calls made
    foreign_snapshots: int = 0  # GetSnapshot answers from another session than the stream's, dropped
    reconnects: int = 0  # connection attempts after the first
    sessions: int = 0  # streams opened (a restarted server or a reconnect each add one)
    watchdog_timeouts: int = 0  # connections given up because nothing arrived for heartbeat_timeout
    unexpected_errors: int = 0  # connections ended by an unexpected exception (a bug) and retried
    # Per (instrument id, fault_reason): faults detected, each marking the book stale until a snapshot mends it.
    faults_by_instrument: dict[tuple[str, str], int] = field(default_factory=dict)

    def count_fault(self, fault: BookError, instrument_id: str | None = None) -> None:
        """Count one detected fault by its kind (and, given ``instrument_id``, by instrument and kind)."""
        reason = fault_reason(fault)
        if instrument_id is not None:
            key = (instrument_id, reason)
            self.faults_by_instrument[key] = self.faults_by_instrument.get(key, 0) + 1
        counter = _COUNTERS[reason]
        setattr(self, counter, getattr(self, counter) + 1)


# The SubscriberStats counter of each fault reason (a gap before any snapshot counts as a gap).
_COUNTERS = {
    "gap": "gaps",
    "snapshot_missing": "gaps",
    "checksum": "checksum_errors",
    "digest": "digest_errors",
    "crossed": "crossed",
    "invalid": "invalid",
}
