"""Benchmark results and the one table that ``python -m bench`` prints.

With ``--repeat N`` every row is run N times and :func:`combine` folds the runs into one line per row: the
table then shows the figure's min, median and max over the runs, the baseline's and the ratio's median with
their range, and judges the medians.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "Result",
    "Target",
    "at_least",
    "at_most",
    "combine",
    "error_result",
    "guarded",
    "info",
    "render_table",
    "write_json",
]

log = logging.getLogger("bench")


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
    ``flag`` names a condition of the measurement that makes its figure meaningless (``"feed behind"``: the feed
    fell behind the wall clock during the window), so the line does not pass whatever its figure;
    ``error`` is set when the row could not be measured at all, which fails the run; ``pure`` is the row's figure
    on the pure-Python core when both cores ran (``python -m bench --core both``). ``runs`` is empty for a
    single run; a line made by :func:`combine` keeps every run's line there, and its figure and baseline are
    the runs' medians.
    """

    row: str
    label: str
    figure: float | None
    unit: str
    target: Target = field(default_factory=info)
    baseline: float | None = None
    min_ratio: float | None = None
    note: str = ""
    flag: str = ""
    error: str | None = None
    runs: list[Result] = field(default_factory=list)
    pure: float | None = None  # with ``--core both``: the same row's figure on the pure-Python core

    @property
    def ratio(self) -> float | None:
        """figure/baseline; over repeated runs, the median of the runs' ratios (each run's own baseline)."""
        if self.runs:
            ratios = _figures([run.ratio for run in self.runs])
            return statistics.median(ratios) if ratios else None
        if self.figure is None or not self.baseline:
            return None
        return self.figure / self.baseline

    def spread(self) -> tuple[float, float, float] | None:
        """(min, median, max) of the figure over the runs (just the figure for one run); None if none measured."""
        figures = _figures([run.figure for run in self.runs] if self.runs else [self.figure])
        if not figures:
            return None
        return min(figures), statistics.median(figures), max(figures)

    @property
    def passed(self) -> bool | None:
        """True/False against the target (and the ratio target); None when there is nothing to judge."""
        if self.error is not None or self.flag:
            return False
        if any(not _measured(run.figure) for run in self.runs) and self.target.check is not None:
            return False  # a run that measured nothing fails the line, as a single run would
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
        if self.runs:
            spread = self.spread()
            out["min"], out["median"], out["max"] = spread if spread is not None else (None, None, None)
            out["runs"] = [run.as_dict() for run in self.runs]
        else:
            del out["runs"]
        return out


def error_result(row: str, label: str, unit: str, error: str) -> Result:
    return Result(row, label, None, unit, error=error)


def guarded(rows: Sequence[str], what: str, part: Callable[[], list[Result]]) -> list[Result]:
    """``part()``'s results; when it raises, an ERROR line for each of its ``rows`` (logged with its traceback)."""
    try:
        return part()
    except Exception as exc:
        log.exception("%s failed", what)
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return [error_result(row, what, "-", message) for row in rows]


def _measured(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def _figures(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and not math.isnan(v)]


def _median(values: Sequence[float | None]) -> float | None:
    measured = _figures(values)
    return statistics.median(measured) if measured else None


def combine(runs: Sequence[Sequence[Result]]) -> list[Result]:
    """One line per row over repeated runs of the same rows, in the first run's order.

    Figure and baseline are the medians over the runs that measured them; the label, unit and targets are the
    first run's; ``flag`` and ``error`` name the runs that had one; ``runs`` keeps every run's line.
    """
    by_row: dict[str, list[Result]] = {}
    for lines in runs:
        for line in lines:
            by_row.setdefault(line.row, []).append(line)
    out: list[Result] = []
    for row, lines in by_row.items():
        first = lines[0]
        errors = [f"run {n}: {line.error}" for n, line in enumerate(lines, 1) if line.error is not None]
        flagged: dict[str, list[str]] = {}
        for n, line in enumerate(lines, 1):
            if line.flag:
                flagged.setdefault(line.flag, []).append(str(n))
        out.append(
            Result(
                row,
                first.label,
                _median([line.figure for line in lines]),
                first.unit,
                first.target,
                baseline=_median([line.baseline for line in lines]),
                min_ratio=first.min_ratio,
                flag="; ".join(f"{flag}: run {', '.join(numbers)}" for flag, numbers in flagged.items()),
                error="; ".join(errors) if errors else None,
                runs=list(lines),
            )
        )
    return out


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
    if result.flag:
        return f"FAIL ({result.flag})"
    passed = result.passed
    return "-" if passed is None else ("PASS" if passed else "FAIL")


def _range(values: Sequence[float | None], number: Callable[[float], str]) -> str:
    """`` (min to max)`` of the measured values when there are several, else ``""``."""
    measured = _figures(values)
    if len(measured) < 2:
        return ""
    return f" ({number(min(measured))} to {number(max(measured))})"


def _ratio_text(result: Result) -> str:
    ratio = result.ratio
    if ratio is None:
        return "-"
    spread = _range([run.ratio for run in result.runs], lambda value: f"{value:.2f}")
    return f"{ratio:.2f}{spread}" + (f" (>={result.min_ratio:g})" if result.min_ratio else "")


def render_table(results: Sequence[Result]) -> str:
    """The table as text: row, figure, unit, target, baseline, ratio, verdict, then notes and errors.

    Over repeated runs (lines made by :func:`combine`) the figure is three columns, min, median and max, the
    baseline and the ratio are medians with their range, and each run's note is listed."""
    repeats = max((len(r.runs) for r in results), default=0)
    both = any(r.pure is not None for r in results)
    figure_columns: tuple[str, ...] = ("min", "median", "max") if repeats > 1 else ("figure",)
    figure_columns += ("pure Python",) if both else ()
    header = ("row", "what", *figure_columns, "unit", "target", "baseline", "ratio", "verdict")
    numeric = {*range(2, 2 + len(figure_columns)), len(header) - 3, len(header) - 2}
    lines: list[tuple[str, ...]] = [header]
    for r in results:
        if repeats > 1:
            spread = r.spread()
            figures = tuple(_number(v) for v in spread) if spread is not None else ("-", "-", "-")
        else:
            figures = (_number(r.figure),)
        if both:
            figures += (_number(r.pure),)
        baseline = _number(r.baseline) + _range([run.baseline for run in r.runs], _number)
        lines.append((r.row, r.label, *figures, r.unit, r.target.text, baseline, _ratio_text(r), _verdict(r)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out: list[str] = []
    for n, line in enumerate(lines):
        cells = [
            cell.rjust(w) if i in numeric and n else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append(" | ".join(cells).rstrip())
        if n == 0:
            out.append("-+-".join("-" * w for w in widths))
    if repeats > 1:
        out += [
            "",
            f"{repeats} runs of each row: the figure's min, median and max; the baseline and the ratio (each run's "
            "figure over its own baseline) as median (min to max); the verdict judges the medians.",
        ]
    notes: list[str] = []
    for r in results:
        if not r.runs:
            notes += [f"  {r.row}: {r.note}"] if r.note else []
            continue
        for k, run in enumerate(r.runs, 1):
            label = f"{run.label}; " if run.label != r.label else ""
            if label or run.note:
                notes.append(f"  {r.row} (run {k}/{len(r.runs)}): {label}{run.note}".rstrip("; "))
    errors = [f"  {r.row}: {r.error}" for r in results if r.error]
    if notes:
        out += ["", "notes:", *notes]
    if errors:
        out += ["", "errors:", *errors]
    return "\n".join(out)


def write_json(path: Path, results: Sequence[Result], meta: dict[str, object]) -> None:
    path.write_text(json.dumps({"meta": meta, "results": [r.as_dict() for r in results]}, indent=2) + "\n")
