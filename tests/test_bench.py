"""``python -m bench --quick`` runs the real processes end to end and prints every row of the table.

The numbers are not checked (machines are noisy); that every row was measured and printed is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ROWS = ["1", "2", "3a", "3b", "3c", "3d", "3e", "4a", "4b", "4c", "4d", "5", "6", "7a", "7b", "7c", "7d"]


def test_quick_bench_prints_every_row(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    out_json = tmp_path / "bench.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out_json)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, f"bench failed:\n{stdout}\n{stderr[-3000:]}"
    table_rows = {line.split("|")[0].strip() for line in stdout.splitlines() if "|" in line}
    missing = [row for row in ROWS if row not in table_rows]
    assert not missing, f"rows missing from the table: {missing}\n{stdout}"
    assert "ERROR" not in stdout
    saved = json.loads(out_json.read_text())
    assert [r["row"] for r in saved["results"]] == ROWS
    assert all(r["figure"] is not None for r in saved["results"])
    assert saved["meta"]["quick"] is True
