"""Check your own exercise notebooks: the grader's tests on your answers, with points.

    python autograder/selfcheck.py exercises/ch02_tokenizer            # one chapter
    python autograder/selfcheck.py exercises/ch02_tokenizer/01_pretokenize.ipynb
    python autograder/selfcheck.py exercises                           # the whole course

It does what nbgrader's autograde does for a grade, in the spirit of a trustworthy
grader: the notebook that runs is the *instructor's copy* (``solutions/`` when present,
with its hidden tests; else the release in ``exercises/``), into which only your answer
cells are copied, matched by nbgrader ``grade_id``. Editing or deleting a test cell in
your copy therefore changes nothing. A test cell scores its points when it raises no
error and writes nothing to stderr, as in nbgrader. It runs in a fresh temporary folder.

This tool imports no course code and works for any nbgrader course laid out with
``solutions/`` and ``exercises/`` side by side. It is not a sandbox: it runs your code
as you. (Batch grading of a class belongs to the sandboxed grader.)
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HIDDEN_MARKERS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")


@dataclass
class TestResult:
    grade_id: str
    points: float
    score: float
    message: str = ""


@dataclass
class NotebookResult:
    path: Path
    instructor_copy: Path | None
    tests: list[TestResult] = field(default_factory=list)
    error: str = ""

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.points for t in self.tests)


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def instructor_copy(path: Path) -> Path | None:
    """The solutions/ copy of an exercises/ notebook, else the release itself."""
    parts = path.resolve().parts
    if "exercises" in parts:
        i = len(parts) - 1 - parts[::-1].index("exercises")
        source = Path(*parts[:i], "solutions", *parts[i + 1:])
        if source.exists():
            return source
    return None


def assemble(submitted: nbformat.NotebookNode, instructor: nbformat.NotebookNode
             ) -> nbformat.NotebookNode:
    """The instructor's notebook with the submitted answer cells put in, hidden tests shown."""
    answers = {}
    for cell in submitted.cells:
        meta = _nbgrader(cell)
        if meta.get("solution") and meta.get("grade_id") and cell.cell_type == "code":
            answers.setdefault(meta["grade_id"], cell.source)
    nb = copy.deepcopy(instructor)
    for cell in nb.cells:
        meta = _nbgrader(cell)
        if meta.get("solution") and meta.get("grade_id") in answers:
            cell.source = answers[meta["grade_id"]]
        elif meta.get("solution") and cell.cell_type == "code":
            cell.source = "raise NotImplementedError('answer cell missing from the submission')"
        if cell.cell_type == "code":
            cell.source = "\n".join(line for line in cell.source.splitlines()
                                    if line.strip() not in HIDDEN_MARKERS)
            cell.outputs = []
    return nb


def _failure(cell) -> str:
    """'' when a test cell passed; else its error (or the stderr text) in one line."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            lines = [ln for ln in (out.get("evalue") or "").splitlines() if ln.strip()]
            return f"{out.get('ename')}: {lines[0] if lines else ''}"[:300]
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            return "wrote to stderr: " + out.get("text", "").strip().splitlines()[0][:200]
    return ""


def check_notebook(path: Path, timeout: int = 120) -> NotebookResult:
    """Grade one notebook; never raises for a broken submission."""
    source = instructor_copy(path)
    result = NotebookResult(path=path, instructor_copy=source)
    try:
        submitted = nbformat.read(path, as_version=4)
        instructor = nbformat.read(source, as_version=4) if source else submitted
    except (OSError, ValueError, json.JSONDecodeError) as err:
        result.error = f"not a readable notebook: {err}"
        return result
    nb = assemble(submitted, instructor)
    with tempfile.TemporaryDirectory(prefix="selfcheck-") as tmp:
        client = NotebookClient(nb, timeout=timeout, allow_errors=True,
                                kernel_name="python3", resources={"metadata": {"path": tmp}})
        try:
            client.execute()
        except Exception as err:  # noqa: BLE001 - a dead kernel or a timeout is a result
            result.error = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200]}"
    for cell in nb.cells:
        meta = _nbgrader(cell)
        if meta.get("grade") and cell.cell_type == "code":
            points = float(meta.get("points", 0))
            message = _failure(cell) or ("" if cell.get("outputs") is not None and
                                         cell.get("execution_count") else "did not run")
            result.tests.append(TestResult(meta.get("grade_id", "?"), points,
                                           0.0 if message else points, message))
    return result


def notebooks_under(target: Path) -> list[Path]:
    if target.is_file():
        return [target]
    found = sorted(p for p in target.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not found:
        raise SystemExit(f"no notebooks under {target}")
    return found


def report(results: list[NotebookResult]) -> str:
    lines = []
    for r in results:
        source = r.instructor_copy or r.path
        lines.append(f"{r.path}  (tests from {source})")
        if r.error:
            lines.append(f"  ! {r.error}")
        for t in r.tests:
            verdict = "passed" if t.score == t.points else f"failed  {t.message}"
            lines.append(f"  {t.grade_id:<28} {t.score:g}/{t.points:g}  {verdict}")
        lines.append(f"  {'total':<28} {r.score:g}/{r.max_score:g}")
    total, best = sum(r.score for r in results), sum(r.max_score for r in results)
    lines.append(f"course total: {total:g}/{best:g} points in {len(results)} notebook(s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check your exercise notebooks.")
    parser.add_argument("paths", nargs="+", type=Path, help="notebooks or folders")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per cell")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    missing = [p for p in args.paths if not p.exists()]
    if missing:
        parser.error(f"no such file or folder: {', '.join(map(str, missing))}")
    results = [check_notebook(nb, args.timeout) for p in args.paths for nb in notebooks_under(p)]
    if args.json:
        print(json.dumps([{"notebook": str(r.path), "score": r.score, "max_score": r.max_score,
                           "error": r.error, "tests": [vars(t) for t in r.tests]}
                          for r in results], indent=1))
    else:
        print(report(results))
    return 0 if all(r.score == r.max_score and not r.error for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
