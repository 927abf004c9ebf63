"""Benchmark: the sandboxed grader against stock ``nbgrader autograde`` on the same class.

What it measures: wall seconds (``time.perf_counter``, one run each) to grade
``--students`` generated students over every notebook of the course:

* ``autograder/grade --jobs N`` -- one sandboxed process per notebook (namespaces,
  limits, the runner's forked test cells), N notebooks at a time, and with ``--jobs 1``
  (one at a time, like nbgrader: the sandbox's own cost);
* ``nbgrader autograde`` -- stock nbgrader, one Jupyter kernel per notebook, one at a
  time (it has no parallel mode), on a temporary copy of the course.

Students are a seeded mixture: honest (every answer from ``solutions/``), stubs (the
release as handed out) and partial (each answer cell honest with probability 1/2). The
script checks that both graders give every notebook the same score, and stops if not.
Reported: seconds, notebooks per minute, and the ratio of the grader's time to
nbgrader's (goal: at most 1.3 one notebook at a time, i.e. the sandbox costs little).

Run: ``.venv/bin/python bench/grading.py --students 50`` (the default; a 2-core machine
needs about an hour for nbgrader's share, so ``--students 5`` is what fits 10 minutes).
Output: a table, then one JSON line; the same JSON, with machine info, goes to
bench/results/grading.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import print_table, report
from tinygpt.runtime import machine_info

ROOT = Path(__file__).resolve().parent.parent


def _answers(nb: dict) -> dict[str, str]:
    return {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]) for c in nb["cells"]
            if c.get("metadata", {}).get("nbgrader", {}).get("solution")}


def make_class(submitted: Path, students: int, seed: int) -> int:
    """Write the generated submissions; return how many notebooks there are."""
    rng, count = random.Random(seed), 0
    for i in range(students):
        kind = ("honest", "stub", "partial")[i % 3]
        for solution in sorted((ROOT / "solutions").glob("ch*/*.ipynb")):
            release = json.loads((ROOT / "exercises" / solution.parent.name / solution.name).read_text())
            answers = _answers(json.loads(solution.read_text()))
            for cell in release["cells"]:
                grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                honest = kind == "honest" or (kind == "partial" and rng.random() < 0.5)
                if grade_id in answers and honest:
                    cell["source"] = answers[grade_id]
            folder = submitted / f"s{i:03d}-{kind}" / solution.parent.name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / solution.name).write_text(json.dumps(release))
            count += 1
    return count


def run_grader(submitted: Path, out: Path, jobs: int) -> tuple[float, dict]:
    start = time.perf_counter()
    subprocess.run([str(ROOT / "autograder" / "grade"), str(submitted), "--out", str(out),
                    "--jobs", str(jobs)], check=True, capture_output=True)
    seconds = time.perf_counter() - start
    with (out / "grades.csv").open() as f:
        return seconds, {(r["student_id"], r["assignment"], r["notebook"]): float(r["score"])
                         for r in csv.DictReader(f)}


def run_nbgrader(submitted: Path, course: Path) -> tuple[float, dict]:
    from nbgrader.api import Gradebook

    course.mkdir()
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.source_directory = 'source'\nc.Execute.timeout = 300\n")
    shutil.copytree(ROOT / "solutions", course / "source")
    shutil.copytree(submitted, course / "submitted")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

    def nbgrader(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "nbgrader", *args, "--log-level=ERROR"], cwd=course,
                       env=env, check=True, capture_output=True)
    assignments = sorted(p.name for p in (ROOT / "solutions").glob("ch*") if p.is_dir())
    for assignment in assignments:
        nbgrader("db", "assignment", "add", assignment)
        nbgrader("generate_assignment", assignment, "--force")
    start = time.perf_counter()
    for assignment in assignments:
        nbgrader("autograde", assignment, "--force")
    seconds = time.perf_counter() - start
    scores = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for assignment in assignments:
            for nb in gb.find_assignment(assignment).notebooks:
                for sub in nb.submissions:
                    scores[sub.student.id, assignment, nb.name] = sub.score
    return seconds, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--students", type=int, default=50, help="generated students")
    parser.add_argument("--jobs", type=int, default=2, help="the grader's parallel notebooks")
    parser.add_argument("--seed", type=int, default=0, help="seed of the partial answers")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        tmp = Path(tmp)
        notebooks = make_class(tmp / "submitted", args.students, args.seed)
        ours, our_scores = run_grader(tmp / "submitted", tmp / "out", args.jobs)
        print(f"autograder/grade --jobs {args.jobs}: {ours:.1f} s for {notebooks} notebooks", flush=True)
        serial, serial_scores = run_grader(tmp / "submitted", tmp / "out1", 1)
        print(f"autograder/grade --jobs 1: {serial:.1f} s", flush=True)
        stock, stock_scores = run_nbgrader(tmp / "submitted", tmp / "course")
    for name, scores in (("--jobs N", our_scores), ("--jobs 1", serial_scores)):
        differ = {k: (v, stock_scores.get(k)) for k, v in scores.items() if stock_scores.get(k) != v}
        if differ:
            raise SystemExit(f"{name} and nbgrader disagree on {len(differ)} notebooks: "
                             f"{list(differ.items())[:5]}")
    rows = [[f"autograder/grade --jobs {args.jobs}", f"{ours:.1f}", f"{60 * notebooks / ours:.1f}",
             f"{ours / stock:.2f}"],
            ["autograder/grade --jobs 1", f"{serial:.1f}", f"{60 * notebooks / serial:.1f}",
             f"{serial / stock:.2f}"],
            ["nbgrader autograde", f"{stock:.1f}", f"{60 * notebooks / stock:.1f}", "1.00"]]
    print(f"{args.students} students x {notebooks // args.students} notebooks = {notebooks} notebooks")
    print_table(["grader", "seconds", "notebooks/min", "x nbgrader"], rows)
    summary = {"benchmark": "grading", "students": args.students, "notebooks": notebooks,
               "jobs": args.jobs, "grader_s": round(ours, 2), "grader_jobs1_s": round(serial, 2),
               "nbgrader_s": round(stock, 2), "ratio": round(ours / stock, 3),
               "ratio_jobs1": round(serial / stock, 3),
               "grader_notebooks_per_min": round(60 * notebooks / ours, 1),
               "nbgrader_notebooks_per_min": round(60 * notebooks / stock, 1),
               "goal_ratio_at_most": 1.3, "same_scores": True}
    report("grading", summary, {"machine": machine_info(["nbgrader", "torch", "nbclient"])})


if __name__ == "__main__":
    main()
