"""Check your own exercise notebooks: the grader's tests on your answers, with points.

    python autograder/selfcheck.py exercises/ch02_tokenizer            # one chapter
    python autograder/selfcheck.py exercises/ch02_tokenizer/01_pretokenize.ipynb
    python autograder/selfcheck.py exercises                           # the whole course

It does what nbgrader's autograde does for a grade, in the spirit of a trustworthy
grader: the notebook that runs is the *instructor's copy* (``solutions/`` when present,
with its hidden tests; else the release in ``exercises/``), into which only your answer
cells are copied, matched by nbgrader ``grade_id``. Editing or deleting a test cell in
your copy therefore changes nothing. A test cell scores its points when it raises no
error and its own code writes nothing to stderr; what *your* code warns or writes to
stderr is shown beside the result, never scored.

While a notebook is checked, the course package it imports has that notebook's graded
functions withheld (calling them raises "write it yourself"), exactly as when the class
is graded. It is a front end of the batch grader's engine (``engine.py``): the same assembly, the same
sandboxed runner (``sandbox.py``: namespaces where the machine allows them), one notebook
at a time, no gradebook.

This tool imports no course code and works for any nbgrader course laid out with
``solutions/`` and ``exercises/`` side by side. (Batch grading of a class is ``autograder/grade``.)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

import assemble  # noqa: E402 - the engine's modules sit beside this file
import engine  # noqa: E402
import sandbox  # noqa: E402


@dataclass
class NotebookResult(engine.Scored):
    path: Path
    instructor_copy: Path | None
    tests: list[engine.TestResult] = field(default_factory=list)
    error: str = ""
    said: dict[str, str] = field(default_factory=dict)
    cell_errors: dict[str, str] = field(default_factory=dict)


def instructor_copy(path: Path) -> Path | None:
    """The solutions/ copy of an exercises/ notebook, else None (the release grades itself)."""
    parts = path.resolve().parts
    if "exercises" in parts:
        i = len(parts) - 1 - parts[::-1].index("exercises")
        source = Path(*parts[:i], "solutions", *parts[i + 1:])
        if source.exists():
            return source
    return None


def course_of(path: Path) -> Path:
    """The course folder of ``exercises/<assignment>/<notebook>.ipynb``."""
    return path.resolve().parent.parent.parent


def check_notebook(path: Path, view: engine.View | None = None, timeout: int = 120) -> NotebookResult:
    """Grade one notebook; never raises for a broken submission (a sandbox that cannot run
    the course raises :class:`engine.SandboxError`). Without a ``view``, one of its own."""
    if view is None:
        with engine.View(course_of(path), sandbox.detect_mode()) as own:
            own.check([instructor_copy(path) or path], sandbox.Limits())
            return check_notebook(path, own, timeout)
    source = instructor_copy(path)
    result = NotebookResult(path=path, instructor_copy=source)
    try:
        cells = len(assemble.read(source or path)["cells"])
    except (assemble.InvalidNotebook, OSError) as err:
        result.error = f"not a readable notebook: {err}"
        return result
    hidden = (source.parent.parent, source.parent.parent.parent / "autograder") if source else ()
    graded = engine.grade_notebook(path, source or path, None, view, hidden=hidden,
                                   limits=sandbox.Limits(timeout=timeout * cells))
    result.tests, result.said, result.cell_errors = graded.tests, graded.said, graded.cell_errors
    if graded.status not in ("ok", "tampered"):
        result.error = f"{graded.status}: {graded.note}" if graded.note else graded.status
    return result


def notebooks_under(target: Path) -> list[Path]:
    if target.is_file():
        return [target]
    found = sorted(p for p in target.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not found:
        raise SystemExit(f"no notebooks under {target}")
    return found


def _said(cell: str, text: str) -> list[str]:
    """What the learner's code printed, warned or wrote to stderr: shown, not scored."""
    return [f"  ~ {cell} said (not scored): {line}" for line in text.splitlines()[:5]] if text else []


def _verdict(t: engine.TestResult) -> list[str]:
    """A test's line; a failure's further lines (the compared values, the line) below it."""
    if t.score == t.points:
        return [f"  {t.grade_id:<28} {t.score:g}/{t.points:g}  passed"]
    first, *more = t.message.splitlines() or [""]
    return [f"  {t.grade_id:<28} {t.score:g}/{t.points:g}  failed  {first}",
            *(f"  {'':<28}     {line}" for line in more[:8])]


def _summary(r: NotebookResult) -> str:
    """One line per notebook: its points and what to do about the first failure."""
    failed = next((t for t in r.tests if t.score < t.points), None)
    line = f"{r.path.stem}: {r.score:g}/{r.max_score:g}"
    if r.cell_errors:
        cell, error = next(iter(r.cell_errors.items()))
        return f"{line}; first fix your `{cell}` cell ({error})"
    if failed is not None:
        line += f"; first failure {failed.grade_id}"
        if failed.section:
            line += f": reread {failed.reread}"
    return line


def report(results: list[NotebookResult]) -> str:
    lines = []
    for r in results:
        source = r.instructor_copy or r.path
        lines.append(f"{r.path}  (tests from {source})")
        if r.error:
            lines.append(f"  ! {r.error}")
        for cell, error in r.cell_errors.items():
            lines.append(f"  ! your `{cell}` cell did not run to its end: {error}")
        for cell, text in r.said.items():
            lines += _said(cell, text)
        for t in r.tests:
            lines += _verdict(t)
            lines += _said(t.grade_id, t.said)
        lines.append(f"  {'total':<28} {r.score:g}/{r.max_score:g}")
    lines += [_summary(r) for r in results]
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
    notebooks = [nb for p in args.paths for nb in notebooks_under(p)]
    mode = sandbox.detect_mode()
    results = []
    with contextlib.ExitStack() as stack:
        views: dict[Path, engine.View] = {}
        try:
            for nb in notebooks:
                course = course_of(nb)
                if course not in views:
                    views[course] = stack.enter_context(engine.View(course, mode))
                    views[course].check([instructor_copy(n) or n for n in notebooks
                                         if course_of(n) == course], sandbox.Limits())
                results.append(check_notebook(nb, views[course], args.timeout))
        except engine.SandboxError as err:
            print(f"cannot check: {err}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps([{"notebook": str(r.path), "score": r.score, "max_score": r.max_score,
                           "error": r.error, "tests": [vars(t) for t in r.tests]}
                          for r in results], indent=1))
    else:
        print(report(results))
    return 0 if all(r.score == r.max_score and not r.error for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
