"""Split this repository into an instructor repository and a student repository.

Design section 6: the open repository ships ``solutions/`` so that self-learners can
compare, but an instructor grading a class keeps the solutions, and the hidden tests
inside them, private. This writes two folders from the files git tracks here:

* the **instructor** folder: everything, as it is (solutions, hidden tests, the batch
  grader and its nbgrader configuration, the developer tests, CI);
* the **student** folder: the book, ``exercises/`` (the nbgrader release: stubs and
  visible tests only), the ``tinygpt`` package, the benchmarks, and the part of
  ``autograder/`` that ``make check`` needs (``selfcheck.py`` and the engine it runs).
  Left out: ``solutions/``, the batch grader's front end and configuration, the
  developer tests and CI, and ``tools/`` (which regenerate from ``solutions/``).

The package keeps the graded chapters' reference code: the visible checks compare a
learner's functions against it, and each chapter builds on the ones before. What a
student must not see is what would let them pass without the work, the hidden tests;
they exist only in ``solutions/``. Before it finishes, the split checks that no notebook
in the student folder holds a solution or hidden-test region, and that no solution
notebook was copied.

    python tools/split.py --student ../course-student --instructor ../course-instructor

Both folders must be new or empty: nothing that exists is overwritten. Neither may lie
inside this repository.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from generate import SOLUTION_MARKERS

ROOT = Path(__file__).resolve().parent.parent
# What the student folder leaves out: folders (a trailing slash) and single files.
INSTRUCTOR_ONLY = ("solutions/", "tests/", "tools/", ".ci/", ".github/", "autograder/grade",
                   "autograder/grade.py", "autograder/report.py",
                   "autograder/nbgrader_config.py", "autograder/release_header.ipynb")
# The start of a solution region (as generate.py strips them) or of a hidden-test region
# (as autograder/assemble.py's HIDDEN_MARKERS)
MARKERS = (SOLUTION_MARKERS[0], "### BEGIN HIDDEN TESTS")


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                         capture_output=True).stdout.decode()
    return sorted(f for f in out.split("\0") if f and (ROOT / f).is_file())


def for_students(path: str) -> bool:
    return not any(path.startswith(p) if p.endswith("/") else path == p for p in INSTRUCTOR_ONLY)


def _usable_target(folder: Path) -> Path:
    folder = folder.resolve()
    if folder == ROOT or ROOT in folder.parents:
        raise SystemExit(f"error: {folder} is inside this repository; choose a folder outside it")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise SystemExit(f"error: {folder} exists and is not empty; nothing was written")
    return folder


def leaks(folder: Path, solution_notebooks: set[bytes]) -> list[str]:
    """Notebooks under ``folder`` that hold a solution or hidden-test region, or are a
    solution notebook byte for byte."""
    found = []
    for notebook in sorted(folder.rglob("*.ipynb")):
        raw = notebook.read_bytes()
        cells = json.loads(raw)["cells"]
        text = "\n".join("".join(c.get("source", "")) for c in cells)
        if raw in solution_notebooks or any(m in text for m in MARKERS):
            found.append(str(notebook.relative_to(folder)))
    return found


def split(student: Path, instructor: Path) -> dict[str, int]:
    """Write both folders; return how many files each received."""
    student, instructor = _usable_target(student), _usable_target(instructor)
    if student == instructor:
        raise SystemExit("error: the student and instructor folders must differ")
    files = tracked_files()
    counts = {"student": 0, "instructor": 0}
    for rel in files:
        for name, folder in (("instructor", instructor), ("student", student)):
            if name == "student" and not for_students(rel):
                continue
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, target)
            counts[name] += 1
    solutions = {(ROOT / f).read_bytes() for f in files
                 if f.startswith("solutions/") and f.endswith(".ipynb")}
    leaked = leaks(student, solutions)
    if leaked:
        shutil.rmtree(student)
        raise SystemExit("error: these student notebooks hold solutions or hidden tests, so the "
                         "student folder was removed: " + ", ".join(leaked))
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--student", type=Path, required=True, help="new folder for students")
    parser.add_argument("--instructor", type=Path, required=True, help="new folder for the instructor")
    args = parser.parse_args(argv)
    counts = split(args.student, args.instructor)
    print(f"instructor: {counts['instructor']} files in {args.instructor.resolve()}")
    print(f"student:    {counts['student']} files in {args.student.resolve()} "
          "(no solutions, no hidden tests)")
    print("Make each a git repository of its own (git init, add, commit); publish the student "
          "one to the class and keep the instructor one private.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
