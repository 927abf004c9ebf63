"""Grade notebooks: assemble each from the instructor's copy, run it sandboxed, judge it.

``grade_notebook`` grades one submission (the self-check and the batch grader share it);
``grade_batch`` grades ``SUBMITTED/<student>/<assignment>/<notebook>.ipynb`` against
``COURSE/solutions/<assignment>/`` in parallel, one sandboxed process per notebook.
Statuses: ``ok``, ``timeout``, ``memory``, ``crashed`` (the notebook's process died before
its end), ``invalid``, ``tampered`` (instructor cells or metadata changed, or student code
interfered with grading tools: the score is still what the answers earn), ``missing``.
"""
from __future__ import annotations

import ast
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import assemble
import sandbox

STATUSES = ("ok", "timeout", "memory", "crashed", "invalid", "tampered", "missing")


@dataclass
class TestResult:
    grade_id: str
    points: float
    score: float
    message: str = ""


class Scored:
    """Points earned and points available, summed over ``self.tests``."""

    tests: list[TestResult]

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.points for t in self.tests)


@dataclass
class NotebookResult(Scored):
    student_id: str
    assignment: str
    notebook: str
    status: str = "ok"
    note: str = ""
    tests: list[TestResult] = field(default_factory=list)
    seconds: float = 0.0


def _events(lines: list[str], nonce: str) -> list[tuple]:
    """The runner's events that carry this run's nonce; anything else is ignored."""
    found = []
    for line in lines:
        if len(line) > 4000:
            continue
        try:
            event = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(event, tuple) and len(event) >= 2 and event[1] == nonce:
            found.append(event)
    return found


def _judge(result: NotebookResult, cells: list[dict], run: sandbox.Run, nonce: str,
           notes: list[str], limits: sandbox.Limits) -> None:
    events = _events(run.lines, nonce)
    verdicts: dict[str, tuple[bool, str]] = {}
    flags = {"tamper": [], "memory": [], "output": []}
    for event in events:
        kind = event[0]
        if kind == "test" and len(event) == 5 and isinstance(event[2], str):
            verdicts.setdefault(event[2], (event[3] is True, str(event[4])[:300]))
        elif kind == "flag" and len(event) == 4 and event[2] in flags:
            flags[event[2]].append(str(event[3])[:120])
        elif kind == "cell" and len(event) == 4:
            notes.append(f"{event[2]}: {str(event[3])[:150]}")
    ended = any(e[0] == "end" for e in events)
    for cell in cells:
        if cell["kind"] == "test":
            passed, message = verdicts.get(cell["id"], (False, "did not run"))
            result.tests.append(TestResult(cell["id"], cell["points"],
                                           cell["points"] if passed else 0.0, message))
    if flags["output"]:
        notes.append(f"output cut at the limit in {flags['output'][0]}")
    tampered = sorted(set(flags["tamper"]))
    if tampered:
        notes.append("interfered with grading: " + "; ".join(tampered[:5]))
    if run.returncode is None:
        result.status = "timeout"
        notes.insert(0, f"stopped at the {limits.timeout:g} s wall-time limit")
    elif abs(run.returncode) in (24, 128 + 24, 152):  # SIGXCPU: the CPU-time limit
        result.status = "timeout"
        notes.insert(0, "stopped at the CPU-time limit")
    elif flags["memory"]:
        result.status = "memory"
        notes.insert(0, f"ran out of memory (limit) in {flags['memory'][0]}")
    elif not ended:
        result.status = "crashed"
        notes.insert(0, f"the notebook's process died (exit {run.returncode}) before its end")
    elif tampered or result.status == "tampered":
        result.status = "tampered"


def grade_notebook(submission: Path | None, instructor: Path, release: Path | None,
                   student_id: str = "", assignment: str = "", course: Path | None = None,
                   hidden: tuple[Path, ...] = (), limits: sandbox.Limits = sandbox.Limits(),
                   slot: int = 0, mode: str | None = None) -> NotebookResult:
    """Grade one submitted notebook; never raises for a broken or hostile submission.

    ``release`` is the notebook as handed out, to detect changed instructor cells (None:
    no such check)."""
    result = NotebookResult(student_id, assignment, instructor.stem)
    instructor_nb = assemble.read(instructor)
    if submission is None or not submission.is_file():
        result.status, result.note = "missing", "not submitted"
        result.tests = [TestResult(g, p, 0.0, "not submitted") for g, p in assemble.tests(instructor_nb)]
        return result
    try:
        submitted = assemble.read(submission)
    except (assemble.InvalidNotebook, OSError) as err:
        result.status, result.note = "invalid", str(err)
        result.tests = [TestResult(g, p, 0.0, "invalid notebook") for g, p in assemble.tests(instructor_nb)]
        return result
    notes = assemble.tampering(submitted, assemble.read(release)) if release else []
    if notes:
        result.status = "tampered"
    cells = assemble.job_cells(instructor_nb, submitted)
    nonce = secrets.token_hex(16)
    run = sandbox.run({"nonce": nonce, "cells": cells}, course or instructor.parent,
                      list(hidden), limits, slot, mode)
    result.seconds = run.seconds
    _judge(result, cells, run, nonce, notes, limits)
    result.note = "; ".join(notes)[:1000]
    return result


@dataclass(frozen=True)
class Course:
    root: Path

    @property
    def solutions(self) -> Path:
        return self.root / "solutions"

    def assignments(self) -> list[str]:
        return sorted(p.name for p in self.solutions.iterdir() if p.is_dir())

    def notebooks(self, assignment: str) -> list[Path]:
        return sorted((self.solutions / assignment).glob("*.ipynb"))

    def release(self, assignment: str, notebook: str) -> Path | None:
        path = self.root / "exercises" / assignment / notebook
        return path if path.is_file() else None


def grade_batch(submitted: Path, course: Course, out: Path, limits: sandbox.Limits,
                jobs: int = 1, extra_hidden: tuple[Path, ...] = (), mode: str | None = None,
                on_done: Callable[[NotebookResult], None] = lambda r: None) -> list[NotebookResult]:
    """Every student x notebook of every assignment a student submitted, sorted."""
    assignments = set(course.assignments())
    work = []
    for student in sorted(p for p in submitted.iterdir() if p.is_dir()):
        for folder in sorted(p for p in student.iterdir() if p.is_dir() and p.name in assignments):
            for instructor in course.notebooks(folder.name):
                work.append((student.name, folder.name, instructor, folder / instructor.name))
    hidden = (course.solutions, course.root / "autograder", course.root / ".git",
              submitted.resolve(), out.resolve(), *extra_hidden)
    free_slots = list(range(max(1, jobs)))
    lock = threading.Lock()

    def one(item) -> NotebookResult:
        student, assignment, instructor, path = item
        with lock:
            slot = free_slots.pop()
        try:
            result = grade_notebook(path if path.exists() else None, instructor,
                                    course.release(assignment, instructor.name), student, assignment,
                                    course.root, hidden, limits, slot, mode)
        finally:
            with lock:
                free_slots.append(slot)
        on_done(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, work))
