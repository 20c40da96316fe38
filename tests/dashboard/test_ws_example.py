"""The README's WebSocket example script runs against a live dashboard and verifies every checksum."""

from __future__ import annotations

import subprocess
import sys

from tests.dashboard.conftest import Dashboard
from tests.servers import REPO_ROOT, child_env


def test_the_readme_script_follows_a_book_and_verifies_its_checksums(dashboard: Dashboard) -> None:
    result = subprocess.run(
        [sys.executable, "scripts/ws_example.py", "--base", f"127.0.0.1:{dashboard.port}", "--count", "5"],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    assert all(line.endswith("checksum ok") for line in lines), lines
    sequences = [int(line.split()[0]) for line in lines]
    assert sequences == sorted(sequences) and len(set(sequences)) == 5
