"""What a subscriber counts: messages applied, faults by kind, resyncs, reconnects."""

from __future__ import annotations

from dataclasses import dataclass

from feed_server.protocol.errors import (
    BookError,
    ChecksumMismatch,
    CrossedBook,
    DigestMismatch,
    SequenceGap,
    SnapshotMissing,
)

__all__ = ["SubscriberStats"]


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

    def count_fault(self, fault: BookError) -> None:
        """Count one detected fault by its kind."""
        if isinstance(fault, SequenceGap | SnapshotMissing):
            self.gaps += 1
        elif isinstance(fault, ChecksumMismatch):
            self.checksum_errors += 1
        elif isinstance(fault, DigestMismatch):
            self.digest_errors += 1
        elif isinstance(fault, CrossedBook):
            self.crossed += 1
        else:
            self.invalid += 1
