"""The command line of ``autograder/grade``: grade a folder of submissions in a sandbox.

    autograder/grade SUBMITTED_DIR --out OUT_DIR [--jobs N] [--timeout S] [--memory MB]
                     [--course DIR] [--sandbox MODE] [--book-url URL] [--gradebook [DB_URL]]

``SUBMITTED_DIR/<student_id>/<assignment>/<notebook>.ipynb`` is graded against
``COURSE/solutions/<assignment>/<notebook>.ipynb`` (hidden tests included). Writes
``OUT_DIR/grades.csv`` and ``OUT_DIR/feedback/<student_id>/<assignment>/<notebook>.html``;
never writes into SUBMITTED_DIR. Exits 0 when every notebook was graded (any status),
2 when it cannot grade: a bad argument, or a sandbox that cannot run the course (checked
once before any student). Where the machine allows no namespaces, grading a class needs an
explicit ``--sandbox none`` (the audit hook only; see README.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

import engine
import report
import sandbox

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="autograder/grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("submitted", type=Path, help="SUBMITTED_DIR/<student>/<assignment>/*.ipynb")
    parser.add_argument("--out", type=Path, required=True, help="where grades.csv and feedback/ go")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded at once")
    parser.add_argument("--timeout", type=float, default=sandbox.Limits.timeout,
                        help="wall seconds per notebook (default %(default)s)")
    parser.add_argument("--memory", type=int, default=sandbox.Limits.memory_mb,
                        help="address-space limit per process, MB (default %(default)s)")
    parser.add_argument("--course", type=Path, default=ROOT,
                        help="course folder holding solutions/ and exercises/ (default: this repository)")
    parser.add_argument("--sandbox", choices=["auto", "root", "user", "none"], default="auto",
                        help="isolation mode (default: the strongest this machine allows)")
    parser.add_argument("--book-url", default=None,
                        help="where the built book is, for the feedback's links to the section to "
                             "reread (default: COURSE/_build/html, as make book leaves it)")
    parser.add_argument("--gradebook", nargs="?", const="", default=None, metavar="DB_URL",
                        help="also record into nbgrader's gradebook (default: the course's "
                             "autograder/gradebook.db)")
    args = parser.parse_args(argv)
    submitted, out, course = args.submitted.resolve(), args.out.resolve(), args.course.resolve()
    if not submitted.is_dir():
        parser.error(f"no such folder: {submitted}")
    if not (course / "solutions").is_dir():
        parser.error(f"{course} has no solutions/ folder")
    if out == submitted or submitted in out.parents:
        parser.error("--out must not be inside SUBMITTED_DIR (the input is never modified)")
    out.mkdir(parents=True, exist_ok=True)
    db_url = args.gradebook or f"sqlite:///{course / 'autograder' / 'gradebook.db'}"
    limits = sandbox.Limits(timeout=args.timeout, memory_mb=args.memory)
    gradebook_file = Path(db_url.removeprefix("sqlite:///"))
    mode = sandbox.detect_mode() if args.sandbox == "auto" else args.sandbox
    if mode == "none" and args.sandbox != "none":
        parser.error("this machine allows no namespaces, so a notebook would see the whole machine: "
                     "pass --sandbox none to grade anyway with the audit hook only (autograder/README.md)")
    print(f"sandbox mode: {mode} (see autograder/README.md)", file=sys.stderr)
    with engine.View(course, mode) as view:
        bar = tqdm(desc="grading", unit="notebook", file=sys.stderr)
        try:
            results = engine.grade_batch(submitted, engine.Course(course), out, limits, view, args.jobs,
                                         extra_hidden=(gradebook_file,), on_done=lambda r: bar.update())
        except engine.SandboxError as err:
            bar.close()
            print(f"autograder/grade: cannot grade: {err}", file=sys.stderr)
            return 2
        bar.close()
    report.write_csv(results, out / "grades.csv")
    book_url = args.book_url or (course / "_build" / "html").as_uri()
    report.write_feedback(results, out / "feedback", book_url)
    if args.gradebook is not None:
        report.record_gradebook(results, db_url)
    print(report.summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
