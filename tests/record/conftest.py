"""The recording tests' shared feed and recording: one seeded feed process and one 3 s recording of it for the
whole package (the recorder's, --info's and the export's tests read the same file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.record.support import SUMMARY, run_record
from tests.servers import feed_process


@pytest.fixture(scope="package")
def feed() -> Iterator[str]:
    """A seeded feed process (at a brisk rate) for the recording tests; its address."""
    with feed_process("--seed", "7", "--rate", "200") as address:
        yield address


@pytest.fixture(scope="package")
def recording(feed: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three seconds of the feed, every instrument at depth 100 (shared by the package's tests)."""
    path = tmp_path_factory.mktemp("rec") / "session.mdrec"
    ran = run_record("--address", feed, "--out", str(path), "--duration", "3")
    assert ran.code == 0, ran.err
    assert ran.err == ""
    match = SUMMARY.match(ran.out)
    assert match and len(ran.out.splitlines()) == 1, ran.out
    assert int(match[4]) == path.stat().st_size
    return path
