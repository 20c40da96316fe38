"""Benchmark results and the one table that ``python -m bench`` prints."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["Result", "Target", "at_least", "at_most", "error_result", "info", "render_table", "write_json"]


@dataclass(frozen=True, slots=True)
class Target:
    """A target: its text for the table and the check of a figure (None when there is no target)."""

    text: str
    check: Callable[[float], bool] | None = None


def at_least(value: float, text: str) -> Target:
    return Target(text, lambda figure: figure >= value)


def at_most(value: float, text: str) -> Target:
    return Target(text, lambda figure: figure <= value)


def info() -> Target:
    """No target: the line is there to read, not to pass."""
    return Target("-")


@dataclass(slots=True)
class Result:
    """One line of the table.

    ``min_ratio`` is the least acceptable figure/baseline ratio (None when the ratio is only informative);
    ``error`` is set when the row could not be measured at all, which fails the run.
    """

    row: str
    label: str
    figure: float | None
    unit: str
    target: Target = field(default_factory=info)
    baseline: float | None = None
    min_ratio: float | None = None
    note: str = ""
    error: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.figure is None or not self.baseline:
            return None
        return self.figure / self.baseline

    @property
    def passed(self) -> bool | None:
        """True/False against the target (and the ratio target); None when there is nothing to judge."""
        if self.error is not None:
            return False
        if self.figure is None or math.isnan(self.figure):
            # Nothing measured (e.g. no message arrived): a line with a target fails.
            return False if self.target.check is not None else None
        verdicts: list[bool] = []
        if self.target.check is not None:
            verdicts.append(self.target.check(self.figure))
        if self.min_ratio is not None:
            ratio = self.ratio
            verdicts.append(ratio is not None and ratio >= self.min_ratio)
        return all(verdicts) if verdicts else None

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["target"] = self.target.text
        out["ratio"] = self.ratio
        out["passed"] = self.passed
        return out


def error_result(row: str, label: str, unit: str, error: str) -> Result:
    return Result(row, label, None, unit, error=error)


def _number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    magnitude = abs(value)
    if magnitude >= 100_000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _verdict(result: Result) -> str:
    if result.error is not None:
        return "ERROR"
    passed = result.passed
    return "-" if passed is None else ("PASS" if passed else "FAIL")


def render_table(results: Sequence[Result]) -> str:
    """The table as text: row, figure, unit, target, baseline, ratio, verdict, then notes and errors."""
    header = ("row", "what", "figure", "unit", "target", "baseline", "ratio", "verdict")
    lines: list[tuple[str, ...]] = [header]
    for r in results:
        ratio = r.ratio
        ratio_text = "-" if ratio is None else f"{ratio:.2f}" + (f" (>={r.min_ratio:g})" if r.min_ratio else "")
        lines.append(
            (r.row, r.label, _number(r.figure), r.unit, r.target.text, _number(r.baseline), ratio_text, _verdict(r))
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = {2, 5, 6}
    out: list[str] = []
    for n, line in enumerate(lines):
        cells = [
            cell.rjust(w) if i in numeric and n else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append(" | ".join(cells).rstrip())
        if n == 0:
            out.append("-+-".join("-" * w for w in widths))
    notes = [f"  {r.row}: {r.note}" for r in results if r.note]
    errors = [f"  {r.row}: {r.error}" for r in results if r.error]
    if notes:
        out += ["", "notes:", *notes]
    if errors:
        out += ["", "errors:", *errors]
    return "\n".join(out)


def write_json(path: Path, results: Sequence[Result], meta: dict[str, object]) -> None:
    path.write_text(json.dumps({"meta": meta, "results": [r.as_dict() for r in results]}, indent=2) + "\n")
