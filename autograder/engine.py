"""Grade notebooks: assemble each from the instructor's copy, run it sandboxed, judge it.

``grade_notebook`` grades one submission (the self-check and the batch grader share it);
``grade_batch`` grades ``SUBMITTED/<student>/<assignment>/<notebook>.ipynb`` against
``COURSE/solutions/<assignment>/`` in parallel, one sandboxed process per notebook.
Statuses: ``ok``, ``timeout``, ``memory``, ``crashed`` (the notebook's process died before
its end), ``output`` (its output reached the size limit and was cut), ``invalid``,
``tampered`` (instructor cells or metadata changed, or student code interfered with grading
tools: the score is still what the answers earn), ``missing``.

A :class:`View` is what every graded notebook of one run sees: the sandbox mode, the
interpreter, and for each notebook the course package with that notebook's graded units
withheld (``withhold.py``). Opening one checks once that the sandboxed interpreter starts
and imports the course, and raises :class:`SandboxError` naming the paths when it cannot.
"""
from __future__ import annotations

import ast
import json
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import assemble
import sandbox
import withhold

STATUSES = ("ok", "timeout", "memory", "crashed", "output", "invalid", "tampered", "missing")
DATA = (".cache",)  # folders beside the package that its code reads (tinygpt.runtime.CACHE_DIR)


@dataclass
class TestResult:
    grade_id: str
    points: float
    score: float
    message: str = ""
    said: str = ""      # what the learner's code printed, warned or wrote to stderr during the test
    section: tuple[str, ...] = ()  # (page, title): the book section to reread when it fails

    @property
    def reread(self) -> str:
        return f"book/{self.section[0]}.md, section \u201c{self.section[1]}\u201d" if self.section else ""

    def link(self, book_url: str) -> str:
        """The section in the built book (the anchor Sphinx gives a heading)."""
        if not self.section:
            return ""
        slug = re.sub(r"[^a-z0-9]+", "-", unicodedata.normalize("NFKD", self.section[1]).encode(
            "ascii", "ignore").decode().lower()).strip("-")
        return f"{book_url.rstrip('/')}/book/{self.section[0]}.html#{slug}"


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
    sandbox: str = ""   # the mode that graded it; empty when nothing ran
    said: dict[str, str] = field(default_factory=dict)  # answer cell -> its prints, warnings, stderr
    cell_errors: dict[str, str] = field(default_factory=dict)  # answer cell -> why it did not run


class SandboxError(RuntimeError):
    """The sandbox cannot run the course here: grading would give every notebook zero."""


def _locate(python: str, packages: list[str]) -> dict[str, Path]:
    """Where ``python`` imports each package from (without running any of it); plain
    modules and what it cannot find are left out."""
    probe = ("import importlib.util as u, json, sys\nfound = {}\nfor name in sys.argv[1:]:\n"
             "    try:\n        s = u.find_spec(name)\n    except (ImportError, ValueError):\n"
             "        continue\n    if s and s.submodule_search_locations:\n"
             "        found[name] = list(s.submodule_search_locations)[0]\nprint(json.dumps(found))")
    try:
        found = json.loads(subprocess.run([python, "-I", "-c", probe, *packages], capture_output=True,
                                          text=True, cwd="/", timeout=60).stdout)
    except (OSError, ValueError, subprocess.SubprocessError):
        return {}
    return {name: Path(where) for name, where in found.items()}


def _imported(notebook: Path) -> set[str]:
    """Top-level names the instructor's own cells (not the answers) import."""
    names = set()
    try:
        cells = assemble.read(notebook)["cells"]
    except (assemble.InvalidNotebook, OSError):
        return names
    for cell in cells:
        if cell["cell_type"] != "code" or assemble.nbgrader_meta(cell).get("solution"):
            continue
        try:
            tree = ast.parse(assemble.strip_hidden_markers(assemble.source(cell)))
        except (SyntaxError, ValueError, assemble.InvalidNotebook):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def _units(notebook: Path) -> dict[str, list[str]]:
    try:
        return withhold.graded_units(assemble.read(notebook))
    except (assemble.InvalidNotebook, OSError):  # graded as invalid later, never here
        return {}


@dataclass
class View:
    """What the notebooks of one grading run see; ``with View(course, mode) as view:``.

    In modes root and user the overlay copy is mounted where the interpreter imports the
    package from; in mode none it comes first on ``sys.path`` and the original is hidden."""

    course: Path
    mode: str
    python: str = sys.executable
    locations: dict[str, Path] = field(default_factory=dict)
    overlays: withhold.Overlays | None = None

    def __enter__(self) -> "View":
        folder = Path(tempfile.mkdtemp(prefix="grade-overlay-"))
        folder.chmod(0o755)
        self.overlays = withhold.Overlays(folder)
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.overlays.folder, ignore_errors=True)

    def locate(self, package: str) -> Path:
        """Where the interpreter imports ``package`` from: the source of its overlays."""
        if package not in self.locations:
            where = _locate(self.python, [package]).get(package)
            if where is None:
                raise SandboxError(f"{self.python} cannot import {package!r}: install the course "
                                   f"({self.course}) into that interpreter first (make setup)")
            self.locations[package] = where
        return self.locations[package]

    def check(self, instructors: list[Path], limits: sandbox.Limits) -> None:
        """Start the sandbox once and import every package the notebooks export into."""
        packages = sorted({m.split(".")[0] for nb in instructors for m in _units(nb)})
        for package in packages:
            self.locate(package)
        # what the instructor's cells import from outside the interpreter (the course
        # package, installed in editable mode) is shown too
        visible = tuple(p.rstrip("/") + "/" for p in sandbox.interpreter_paths(self.python, str(self.course)))
        imported = sorted(set().union(*map(_imported, instructors)) - set(packages))
        for name, where in _locate(self.python, imported).items():
            if not (str(where) + "/").startswith(visible):
                self.locations[name] = where
        packages = sorted(self.locations)
        source = "".join(f"import {p}\n" for p in packages) or "pass\n"
        cells = [{"kind": "setup", "id": "preflight", "source": source, "defines": []},
                 {"kind": "test", "id": "preflight-test", "source": source, "defines": [], "points": 0}]
        nonce = secrets.token_hex(16)
        run = sandbox.run({"nonce": nonce, "cells": cells}, self.course, [], limits, 0, self.mode,
                          self.python, self._shown(packages))
        events = _events(run.lines, nonce)
        errors = [str(e[3]) for e in events if e[0] == "cell" and len(e) == 4]
        errors += [str(e[4]) for e in events if e[0] == "test" and len(e) == 5 and e[3] is not True]
        if errors or not any(e[0] == "end" for e in events):
            said = "; ".join(errors) or " ".join(ln for ln in run.lines if "sandbox" in ln)[:300] \
                or f"the sandboxed interpreter exited with {run.returncode} before its end"
            raise SandboxError(f"the sandbox (mode {self.mode}) cannot run the course at {self.course} "
                               f"with {self.python}: {said}")

    def _data(self, package: str) -> tuple[tuple[Path, Path], ...]:
        """The course's data folders, where the package's code looks for them."""
        root = self.locations[package].parent
        return tuple((root / d, root / d) for d in DATA if (root / d).is_dir())

    def _shown(self, packages, overlay: withhold.Overlay | None = None) -> tuple[tuple[Path, Path], ...]:
        """Mounted read-only in modes root and user (mode none mounts nothing)."""
        if self.mode == "none":
            return ()
        shown = []
        for package in packages:
            where = self.locations[package]
            copy = overlay.path if overlay is not None and overlay.package == package else where
            shown += [(copy, where), *self._data(package)]
        return tuple(shown)

    def for_notebook(self, instructor_nb: dict) -> tuple[dict | None, tuple, list[Path]]:
        """(the runner's ``withheld`` spec, the folders shown, the paths hidden) for one notebook."""
        packages = {m.split(".")[0] for m in withhold.graded_units(instructor_nb)}
        root = self.locate(sorted(packages)[0]).parent if packages else None
        overlay = self.overlays.for_notebook(root, instructor_nb, DATA) if root else None
        if overlay is None:
            return None, self._shown(self.locations), []
        spec = overlay.job()
        if self.mode == "none":
            spec.update(prepend=str(overlay.path.parent), visible=str(overlay.path))
            return spec, (), [overlay.original]
        spec["visible"] = str(overlay.original)
        return spec, self._shown(self.locations, overlay), []


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
    said: dict[str, str] = {}
    flags = {"tamper": [], "memory": [], "output": []}
    for event in events:
        kind = event[0]
        if kind == "said" and len(event) == 4 and isinstance(event[2], str):
            said.setdefault(event[2], str(event[3])[:1000])
        elif kind == "test" and len(event) == 5 and isinstance(event[2], str):
            verdicts.setdefault(event[2], (event[3] is True, str(event[4])[:1500]))
        elif kind == "flag" and len(event) == 4 and event[2] in flags:
            flags[event[2]].append(str(event[3])[:120])
        elif kind == "cell" and len(event) == 4:
            notes.append(f"{event[2]}: {str(event[3])[:150]}")
            if any(c["id"] == event[2] and c["kind"] == "answer" for c in cells):
                result.cell_errors.setdefault(str(event[2]), str(event[3])[:300])
    ended = any(e[0] == "end" for e in events)
    broken = {name: cell["id"] for cell in cells if cell["id"] in result.cell_errors
              for name in cell["defines"]}
    for cell in cells:
        if cell["kind"] == "test":
            passed, message = verdicts.get(cell["id"], (False, "did not run"))
            message = _depends(message, broken)
            result.tests.append(TestResult(cell["id"], cell["points"],
                                           cell["points"] if passed else 0.0, message,
                                           said.get(cell["id"], ""), tuple(cell.get("section", ()))))
        elif cell["id"] in said:
            result.said[cell["id"]] = said[cell["id"]]
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
    elif flags["output"]:
        result.status = "output"


def _depends(message: str, broken: dict[str, str]) -> str:
    """A NameError for what a failed answer cell should have defined names that cell."""
    match = re.match(r"NameError: name '(\w+)' is not defined", message)
    if match and match.group(1) in broken:
        return (f"depends on your `{broken[match.group(1)]}` cell, which did not run to its end "
                f"(`{match.group(1)}` is not defined)")
    return message


def grade_notebook(submission: Path | None, instructor: Path, release: Path | None, view: View,
                   student_id: str = "", assignment: str = "", hidden: tuple[Path, ...] = (),
                   limits: sandbox.Limits = sandbox.Limits(), slot: int = 0) -> NotebookResult:
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
    try:
        spec, shown, also_hidden = view.for_notebook(instructor_nb)
    except (OSError, ValueError, SyntaxError) as err:  # the course's own package, not the student
        raise SandboxError(f"cannot withhold {instructor.name}'s graded units: {err}") from err
    job = {"nonce": nonce, "cells": cells, **({"withheld": spec} if spec else {})}
    run = sandbox.run(job, view.course, [*hidden, *also_hidden], limits, slot, view.mode,
                      view.python, shown)
    result.seconds, result.sandbox = run.seconds, view.mode
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


def grade_batch(submitted: Path, course: Course, out: Path, limits: sandbox.Limits, view: View,
                jobs: int = 1, extra_hidden: tuple[Path, ...] = (),
                on_done: Callable[[NotebookResult], None] = lambda r: None) -> list[NotebookResult]:
    """Every student x notebook of every assignment a student submitted, sorted.

    Checks the ``view`` first (:meth:`View.check`): a sandbox that cannot import the
    course raises :class:`SandboxError` before any student is graded."""
    assignments = set(course.assignments())
    work = []
    for student in sorted(p for p in submitted.iterdir() if p.is_dir()):
        for folder in sorted(p for p in student.iterdir() if p.is_dir() and p.name in assignments):
            for instructor in course.notebooks(folder.name):
                work.append((student.name, folder.name, instructor, folder / instructor.name))
    view.check(sorted({item[2] for item in work}), limits)
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
                                    course.release(assignment, instructor.name), view, student,
                                    assignment, hidden, limits, slot)
        finally:
            with lock:
                free_slots.append(slot)
        on_done(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, work))
