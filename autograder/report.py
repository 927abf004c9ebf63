"""What grading leaves behind: grades.csv, per-student HTML feedback, the gradebook, a summary.

The CSV is sorted and holds no times, so a rerun on the same submissions gives the same
file. The feedback pages are self-contained HTML (inline CSS, no scripts, no CDN).
"""
from __future__ import annotations

import csv
import html
from collections import Counter
from pathlib import Path

from engine import STATUSES, NotebookResult

COLUMNS = ["student_id", "assignment", "notebook", "score", "max_score", "status", "sandbox", "note"]

_STYLE = """body{font-family:system-ui,sans-serif;max-width:56rem;margin:2rem auto;color:#222}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3rem .5rem;
text-align:left;vertical-align:top}.pass{color:#176117}.fail{color:#a11}code{white-space:pre-wrap}
.said{color:#735c0f;margin:.3rem 0 0}"""


def write_csv(results: list[NotebookResult], path: Path) -> None:
    rows = sorted(results, key=lambda r: (r.student_id, r.assignment, r.notebook))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow([r.student_id, r.assignment, r.notebook, f"{r.score:g}",
                             f"{r.max_score:g}", r.status, r.sandbox, r.note])


def feedback_html(r: NotebookResult, book_url: str = "") -> str:
    """One notebook's page; a failed test links the book section to reread under ``book_url``."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(t.grade_id)}</td><td>{t.score:g} / {t.points:g}</td>"
        f"<td class={'pass' if t.score == t.points else 'fail'}>"
        f"{'passed' if t.score == t.points else 'failed'}</td><td><code>{e(t.message)}</code>"
        f"{_reread(t, book_url)}{_said(t.said)}</td></tr>" for t in r.tests)
    note = f"<p>Note: {e(r.note)}</p>" if r.note else ""
    note = "".join(f"<p class=fail>Your <code>{e(cell)}</code> cell did not run to its end: "
                   f"<code>{e(error)}</code></p>" for cell, error in r.cell_errors.items()) + note
    note += "".join(f"<p>Cell {e(cell)}:{_said(text)}</p>" for cell, text in r.said.items())
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{e(r.assignment)}/"
            f"{e(r.notebook)}: {e(r.student_id)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{e(r.assignment)} / {e(r.notebook)}</h1><p>Student: {e(r.student_id)}. "
            f"Score: <b>{r.score:g} / {r.max_score:g}</b>. Status: <b>{e(r.status)}</b>.</p>{note}"
            f"<table><tr><th>test</th><th>points</th><th>result</th><th>message</th></tr>"
            f"{rows}</table></body></html>\n")


def _reread(t, book_url: str) -> str:
    if t.score == t.points or not t.section:
        return ""
    name = html.escape(t.reread)
    if not book_url:
        return f"<p>Reread {name}</p>"
    return f"<p>Reread <a href=\"{html.escape(t.link(book_url), quote=True)}\">{name}</a></p>"


def _said(text: str) -> str:
    """Warnings and stderr of the learner's code: shown, never scored."""
    if not text:
        return ""
    return f"<div class=said>warned or wrote to stderr (not scored):<pre>{html.escape(text)}</pre></div>"


def write_feedback(results: list[NotebookResult], folder: Path, book_url: str = "") -> None:
    for r in results:
        path = folder / r.student_id / r.assignment / f"{r.notebook}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(feedback_html(r, book_url), encoding="utf-8")


def record_gradebook(results: list[NotebookResult], db_url: str) -> None:
    """Store the scores as nbgrader autograde would, so formgrader shows them.

    The assignments must be in the gradebook already (``nbgrader generate_assignment``)."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        for r in results:
            gb.update_or_create_student(r.student_id)
            try:
                gb.find_submission(r.assignment, r.student_id)
            except MissingEntry:
                gb.add_submission(r.assignment, r.student_id)
            for t in r.tests:
                grade = gb.find_grade(t.grade_id, r.notebook, r.assignment, r.student_id)
                grade.auto_score = t.score
            gb.db.commit()


def summary(results: list[NotebookResult], slowest: int = 5) -> str:
    counts = Counter(r.status for r in results)
    lines = [f"graded {len(results)} notebook(s): " +
             ", ".join(f"{s} {counts[s]}" for s in STATUSES if counts[s])]
    timed = sorted((r for r in results if r.seconds), key=lambda r: -r.seconds)[:slowest]
    if timed:
        lines.append("slowest: " + ", ".join(
            f"{r.student_id}/{r.assignment}/{r.notebook} {r.seconds:.1f} s" for r in timed))
    return "\n".join(lines)
