"""Shared helpers for the benchmark scripts: timing, the table, the results file.

Where the numbers came from is ``tinygpt.runtime.machine_info``, shared with training records.

Not a benchmark itself (the leading underscore keeps it apart from the scripts).
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """Run ``fn`` ``repeats`` times: (median seconds, every run's seconds, last result)."""
    runs, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), runs, result


def timed_alternating(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[float, list[float], Any]]:
    """``timed`` for several sides in alternating rounds (a, b, a, b, ...), so that a slower
    stretch of a shared machine costs every side alike: {name: (median, runs, last result)}."""
    runs: dict[str, list[float]] = {name: [] for name in fns}
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            runs[name].append(time.perf_counter() - start)
    return {name: (statistics.median(r), r, results[name]) for name, r in runs.items()}


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """A plain, aligned text table (first column left-aligned, the rest right-aligned)."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def report(stem: str, summary: dict[str, Any], details: dict[str, Any]) -> None:
    """Write ``summary`` plus ``details`` to bench/results/<stem>.json, then print ``summary``
    as the last line of output (one JSON line, for scripts that read it)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{stem}.json"
    path.write_text(json.dumps({**summary, **details}, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {path.relative_to(RESULTS.parent.parent)}")
    print(json.dumps(summary))
