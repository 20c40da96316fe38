"""``python -m bench --quick`` runs the real processes end to end and prints every row of the table.

The numbers are not checked (machines are noisy); that every row was measured and printed is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import Result, at_most, combine, info, render_table
from feed_server.protocol.core import CORE

REPO_ROOT = Path(__file__).resolve().parent.parent
ROWS = [
    "1",
    "2",
    "3a",
    "3b",
    "3c",
    "3d",
    "3e",
    "4a",
    "4b",
    "4c",
    "4d",
    "4e",
    "4f",
    "5",
    "6",
    "7a",
    "7b",
    "7c",
    "7d",
    "7e",
    "7f",
    "8",
    "9a",
    "9b",
    "10a",
    "10b",
    "11",
    "12",
    "13a",
    "13b",
    "14",
    "15a",
    "15b",
    "15c",
    "15d",
    "15e",
    "15f",
    "16a",
    "16b",
]


def _bench(args: list[str], timeout: float) -> tuple[int, str, str]:
    """Run ``python -m bench ARGS`` to its end (killed after ``timeout``): exit code, stdout, stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    return proc.returncode, stdout, stderr


def _table(stdout: str) -> list[list[str]]:
    """The table's lines as cells (the header first), without the rule under the header."""
    lines = [line for line in stdout.splitlines() if " | " in line]
    return [[cell.strip() for cell in line.split("|")] for line in lines]


def test_quick_bench_prints_every_row(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    # (One core: both would run every row twice; test_both_cores_side_by_side runs both.)
    code, stdout, stderr = _bench(["--quick", "--core", CORE, "--json", str(out_json)], timeout=300)
    assert code == 0, f"bench failed:\n{stdout}\n{stderr[-3000:]}"
    table_rows = {line.split("|")[0].strip() for line in stdout.splitlines() if "|" in line}
    missing = [row for row in ROWS if row not in table_rows]
    assert not missing, f"rows missing from the table: {missing}\n{stdout}"
    assert "ERROR" not in stdout
    saved = json.loads(out_json.read_text())
    assert [r["row"] for r in saved["results"]] == ROWS
    assert all(r["figure"] is not None for r in saved["results"])
    assert saved["meta"]["quick"] is True
    # Every latency and fan-out line names the feed's lag over its window (and would be flagged had it fallen behind).
    timed = [r for r in saved["results"] if r["row"] in {"3a", "3b", "3c", "3d", "3e", "4a", "4b"}]
    assert all("feed lag max" in r["label"] for r in timed), timed
    assert all((r["flag"] == "feed behind") == ("fell behind" in r["label"]) for r in timed), timed


@pytest.mark.skipif(CORE != "compiled", reason="the compiled core is not built here")
def test_both_cores_side_by_side(tmp_path: Path) -> None:
    """The default where the compiled core is built: the rows on the pure path (a child run) beside the compiled
    ones; row 1's baseline is then the pure-Python book in the same run."""
    out_json = tmp_path / "bench.json"
    code, stdout, stderr = _bench(["--quick", "--rows", "1", "--json", str(out_json)], timeout=180)
    assert code == 0, f"bench failed:\n{stdout}\n{stderr[-3000:]}"
    header, *rows = _table(stdout)
    assert header[2:4] == ["figure", "pure Python"], stdout
    assert [row[0] for row in rows] == ["1"], stdout
    saved = json.loads(out_json.read_text())
    assert saved["meta"]["core"] == "both"
    (result,) = saved["results"]
    (pure,) = json.loads((tmp_path / "bench-python.json").read_text())["results"]
    assert json.loads((tmp_path / "bench-python.json").read_text())["meta"]["core"] == "python"
    assert result["pure"] == pure["figure"] > 0
    assert "the pure-Python book, same messages, same run" in result["note"]
    assert result["figure"] > result["baseline"] > 0  # compiled over pure Python, in the same run
    assert "bare SortedDicts" in pure["note"]


def test_repeat_prints_min_median_max(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    code, stdout, stderr = _bench(
        ["--quick", "--rows", "1", "--repeat", "2", "--core", CORE, "--json", str(out_json)], timeout=120
    )
    assert code == 0, f"bench failed:\n{stdout}\n{stderr[-3000:]}"
    header, *rows = _table(stdout)
    assert header[2:5] == ["min", "median", "max"], stdout
    assert [row[0] for row in rows] == ["1"], stdout
    low, median, high = (float(cell.replace(",", "")) for cell in rows[0][2:5])
    assert 0 < low <= median <= high
    assert "1 (run 1/2)" in stdout and "1 (run 2/2)" in stdout
    saved = json.loads(out_json.read_text())
    assert saved["meta"]["repeat"] == 2
    (result,) = saved["results"]
    assert len(result["runs"]) == 2
    assert result["min"] <= result["median"] == result["figure"] <= result["max"]
    assert sorted(run["figure"] for run in result["runs"]) == [result["min"], result["max"]]


def test_the_subscriber_ceiling_row_decodes_verifies_and_applies_a_recorded_stream(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    code, stdout, stderr = _bench(["--quick", "--rows", "8", "--core", CORE, "--json", str(out_json)], timeout=120)
    assert code == 0, f"bench failed:\n{stdout}\n{stderr[-3000:]}"
    _, *rows = _table(stdout)
    assert [row[0] for row in rows] == ["8"], stdout
    (result,) = json.loads(out_json.read_text())["results"]
    assert result["unit"] == "changes/s" and result["figure"] > 0 and result["baseline"] > 0
    assert "us/change" in result["note"] and "--rate 4000" in result["note"], result["note"]


def test_a_line_whose_feed_fell_behind_does_not_pass_whatever_its_figure() -> None:
    fine = Result("3d", "latency p99", 3.0, "ms", at_most(20, "< 20"))
    behind = Result("3d", "latency p99", 3.0, "ms", at_most(20, "< 20"), flag="feed behind")
    untargeted = Result("3c", "latency p50", 1.0, "ms", info(), flag="feed behind")
    assert fine.passed is True
    assert behind.passed is False and untargeted.passed is False
    table = render_table([behind, untargeted])
    assert table.count("FAIL (feed behind)") == 2, table
    (combined,) = combine([[fine], [behind]])
    assert combined.passed is False
    assert "FAIL (feed behind: run 2)" in render_table([combined])
