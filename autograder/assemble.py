"""What runs for a submission: the instructor's notebook with only the answer cells taken in.

A submission is read as plain JSON (size-capped, never executed, never trusted): its
answer cells (code cells with nbgrader ``solution: true`` and a ``grade_id``) are put into
the instructor's copy by ``grade_id``, first occurrence winning; everything else (setup
cells, visible and hidden tests, points) comes from the instructor's copy, so deleted,
edited, re-ordered, duplicated or pre-answered test cells change nothing.
:func:`tampering` lists such changes against the release, for the ``tampered`` status.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

HIDDEN_MARKERS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
EXPORT = "#| export "
MAX_BYTES = 20 * 1024 * 1024
MISSING_ANSWER = "raise NotImplementedError('answer cell missing from the submission')"


class InvalidNotebook(ValueError):
    """The file is not a notebook we can grade (not JSON, not nbformat 4, too large)."""


def nbgrader_meta(cell: dict) -> dict:
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    found = meta.get("nbgrader") if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else {}


def source(cell: dict) -> str:
    text = cell.get("source", "")
    if isinstance(text, list) and all(isinstance(t, str) for t in text):
        return "".join(text)
    if isinstance(text, str):
        return text
    raise InvalidNotebook("a cell's source is neither text nor a list of lines")


def export_target(cell: dict) -> str | None:
    """The module a code cell exports into: its ``#| export pkg.module`` first line (the
    instructor's copy) or, in a release, where ``release_markers`` moved it, the cell's
    ``metadata.tinygpt.export``."""
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    course = meta.get("tinygpt") if isinstance(meta, dict) else None
    if isinstance(course, dict) and isinstance(course.get("export"), str):
        return course["export"]
    first = source(cell).split("\n", 1)[0]
    return first[len(EXPORT):].strip() if first.startswith(EXPORT) else None


def top_level_names(text: str) -> list[str]:
    """The functions and classes a cell's code defines at its top level (hidden markers aside);
    raises SyntaxError for code that does not parse."""
    tree = ast.parse(strip_hidden_markers(text))
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.ClassDef))]


def read(path: Path) -> dict:
    """The notebook as a dict with a list of cells; raises InvalidNotebook."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise InvalidNotebook(f"{size / 2**20:.0f} MB is over the {MAX_BYTES // 2**20} MB limit")
    try:
        nb = json.loads(path.read_bytes())
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise InvalidNotebook(f"not valid JSON: {str(err)[:120]}") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list) or nb.get("nbformat") != 4:
        raise InvalidNotebook("JSON, but not an nbformat 4 notebook")
    if not all(isinstance(c, dict) and isinstance(c.get("cell_type"), str) for c in nb["cells"]):
        raise InvalidNotebook("a cell is not an object with a cell_type")
    for cell in nb["cells"]:
        source(cell)
    return nb


def strip_hidden_markers(text: str) -> str:
    return "\n".join(ln for ln in text.splitlines() if ln.strip() not in HIDDEN_MARKERS)


def section(cell: dict) -> list[str]:
    """``[page, title]``: the book section a test cell's metadata names to reread when it
    fails (``"tinygpt": {"book": "ch02_tokenizer", "section": "Pre-tokenisation"}``)."""
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    found = meta.get("tinygpt") if isinstance(meta, dict) else None
    if not isinstance(found, dict):
        return []
    page, title = found.get("book"), found.get("section")
    return [page[:80], title[:120]] if isinstance(page, str) and isinstance(title, str) else []


def hidden_lines(text: str) -> list[int]:
    """Line numbers (from 1, in the text without markers) inside hidden-test regions."""
    found, inside, number = [], False, 0
    for line in text.splitlines():
        if line.strip() in HIDDEN_MARKERS:
            inside = line.strip() == HIDDEN_MARKERS[0]
            continue
        number += 1
        if inside:
            found.append(number)
    return found


def defined_names(text: str) -> list[str]:
    """Top-level names an (instructor's) answer cell binds: the student may rebind these."""
    try:
        tree = ast.parse(strip_hidden_markers(text))
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Import, ast.ImportFrom)):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            names += [n.id for t in targets if t is not None for n in ast.walk(t) if isinstance(n, ast.Name)]
            names += [(a.asname or a.name).split(".")[0] for a in getattr(node, "names", [])]
    return names


def answers(submitted: dict) -> dict[str, str]:
    found: dict[str, str] = {}
    for cell in submitted["cells"]:
        meta = nbgrader_meta(cell)
        if cell["cell_type"] == "code" and meta.get("solution") and isinstance(meta.get("grade_id"), str):
            found.setdefault(meta["grade_id"], source(cell))
    return found


def job_cells(instructor: dict, submitted: dict) -> list[dict]:
    """The cells to run, in the instructor's order: kind setup, answer or test."""
    given, cells = answers(submitted), []
    for i, cell in enumerate(instructor["cells"]):
        if cell["cell_type"] != "code":
            continue
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id") or f"cell-{i}"
        text = strip_hidden_markers(source(cell))
        defines = defined_names(text) if meta.get("solution") else []
        if meta.get("solution"):
            text = given.get(grade_id, MISSING_ANSWER)
        kind = "test" if meta.get("grade") else "answer" if meta.get("solution") else "setup"
        cells.append({"kind": kind, "id": grade_id, "source": text, "defines": defines,
                      "points": float(meta.get("points", 0) or 0),
                      "hidden": hidden_lines(source(cell)) if kind == "test" else [],
                      "section": section(cell)})
    return cells


def tests(instructor: dict) -> list[tuple[str, float]]:
    return [(c["id"], c["points"]) for c in job_cells(instructor, instructor) if c["kind"] == "test"]


def tampering(submitted: dict, release: dict) -> list[str]:
    """How the submission's instructor cells differ from the release (empty: untouched)."""
    notes, seen = [], {}
    for cell in submitted["cells"]:
        meta = nbgrader_meta(cell)
        if isinstance(meta.get("grade_id"), str):
            seen.setdefault(meta["grade_id"], []).append(cell)
    for cell in release["cells"]:
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id")
        if meta.get("solution") or not grade_id or not (meta.get("grade") or meta.get("locked")):
            continue
        copies = seen.get(grade_id, [])
        if not copies:
            notes.append(f"{grade_id} deleted")
            continue
        if len(copies) > 1:
            notes.append(f"{grade_id} duplicated")
        mine = copies[0]
        if mine["cell_type"] != cell["cell_type"]:
            notes.append(f"{grade_id} turned into {mine['cell_type']}")
        elif source(mine).strip() != source(cell).strip():
            notes.append(f"{grade_id} edited")
        keys = ("grade", "solution", "locked", "points")
        if any(nbgrader_meta(mine).get(k) != meta.get(k) for k in keys):
            notes.append(f"{grade_id} grading metadata changed")
    return notes
