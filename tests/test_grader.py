"""The sandboxed batch grader (`autograder/grade`) against hostile submissions.

One batch run (``--jobs 2``; the attacks that must time out get a short second one) grades:
honest answers and stubs for every notebook of the
course (full marks and 0), a few attacks on every notebook, and the whole attack set of
``tests/hostile.py`` on one small notebook, each with its expected status and score.
Then: nothing is left running, nothing written outside OUT_DIR, the input unchanged, a
rerun gives the same rows; honest scores equal stock ``nbgrader autograde``'s; and an
ordinary (non-root) user gets the same protection through user namespaces.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import hostile
from conftest import ROOT

pytestmark = pytest.mark.slow
GRADE = ROOT / "autograder" / "grade"
SMALL = ("ch02_tokenizer", "01_pretokenize.ipynb")  # the whole attack set runs on this one
TIMEOUT = "240"       # honest notebooks on a busy 2-core machine stay far below it
SHORT_TIMEOUT = "10"  # for the attacks that must time out, graded in a second, short batch


def _notebook(assignment: str, name: str) -> hostile.Notebook:
    read = lambda top: json.loads((ROOT / top / assignment / name).read_text())  # noqa: E731
    return hostile.Notebook(assignment, name, read("exercises"), read("solutions"))


NOTEBOOKS = [_notebook(p.parent.name, p.name) for p in sorted((ROOT / "solutions").glob("ch*/*.ipynb"))]
SMALL_NB = _notebook(*SMALL)
FULL = [a.name for a in hostile.full_set(SMALL_NB, ROOT, Path("/x"), Path("/y"))
        + hostile.view_attacks(SMALL_NB, ROOT, Path("/x"))]


def _elsewhere() -> Path:
    """A place for a second copy of the course: outside the course root and outside /tmp."""
    home = Path.home()
    top = home if home.is_dir() and os.access(home, os.W_OK) and Path("/tmp") not in home.parents \
        else Path("/var/tmp")
    return Path(tempfile.mkdtemp(prefix="grader-second-copy-", dir=top))


def _second_copy(where: Path) -> None:
    """The instructor's other checkout: its solutions, as a submission would look for them."""
    shutil.copytree(ROOT / "solutions" / SMALL_NB.assignment, where / "solutions" / SMALL_NB.assignment)
FEW = [(nb.assignment, nb.name, a.name) for nb in NOTEBOOKS for a in hostile.few(nb)]


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        h.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def _inputs_digest(base: Path) -> str:
    return "".join(_tree_digest(base / top) for top in ("submitted", "submitted-timeouts"))


def _sandbox_processes() -> list[int]:
    """Processes of the sandbox uids, or with an attack's marker on their command line."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            uid = int(next(ln for ln in status.read_text().splitlines() if ln.startswith("Uid:")).split()[1])
        except (OSError, StopIteration):
            continue
        if 61000 <= uid < 61100:
            found.append(int(status.parent.name))
    return found


def _markers() -> list[Path]:
    places = [Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), Path.home(), ROOT]
    found = []
    for place in places:
        for path in place.glob(f"**/*{hostile.MARKER}*") if place != ROOT else ROOT.glob(f"*{hostile.MARKER}*"):
            found.append(path)
    found += [p for p in (Path.home() / ".ipython", Path.home() / ".jupyter/nbgrader_config.py")
              if p.exists() and hostile.MARKER in str(list(p.rglob("*")) if p.is_dir() else "")]
    return found


def _grade(submitted: Path, out: Path, *extra: str, user: list[str] | None = None,
           timeout: str = TIMEOUT) -> str:
    result = subprocess.run([*(user or []), str(GRADE), str(submitted), "--out", str(out),
                             "--jobs", "2", "--timeout", timeout, "--course", str(ROOT), *extra],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def _rows(out: Path) -> dict[tuple[str, str, str], dict]:
    with (out / "grades.csv").open() as f:
        return {(r["student_id"], r["assignment"], r["notebook"]): r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def batch():
    """Build every submission, grade them all in one run, record the machine around it."""
    base = Path(tempfile.mkdtemp(prefix="grader-test-"))
    submitted, out = base / "submitted", base / "out"
    expected = {}

    def submit(student: str, assignment: str, attack: hostile.Attack) -> None:
        top = base / "submitted-timeouts" if attack.status == "timeout" else submitted
        folder = top / student / assignment
        folder.mkdir(parents=True)
        for name, data in attack.files.items():
            (folder / name).write_bytes(data)
        expected[student] = attack

    for nb in NOTEBOOKS:
        for attack in hostile.few(nb):
            submit(f"few-{_slug(attack.name)}-{nb.assignment}-{Path(nb.name).stem}", nb.assignment, attack)
    elsewhere = _elsewhere()
    _second_copy(elsewhere)
    for attack in hostile.full_set(SMALL_NB, ROOT, submitted, out) + hostile.view_attacks(SMALL_NB, ROOT, elsewhere):
        submit(f"full-{_slug(attack.name)}", SMALL_NB.assignment, attack)
    partial = submitted / "partial" / "ch01_data"
    partial.mkdir(parents=True)
    first = NOTEBOOKS[0]
    (partial / first.name).write_text(json.dumps(first.submission(first.answers)))
    before = _inputs_digest(base)
    output = _grade(submitted, out)
    _grade(base / "submitted-timeouts", base / "out-timeouts", timeout=SHORT_TIMEOUT)
    rows = {**_rows(out), **_rows(base / "out-timeouts")}
    yield {"base": base, "submitted": submitted, "out": out, "rows": rows,
           "expected": expected, "digest_before": before, "output": output,
           "processes": _sandbox_processes(), "markers": _markers()}
    shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(elsewhere, ignore_errors=True)


def _row(batch, student: str, assignment: str, name: str) -> dict:
    return batch["rows"][student, assignment, Path(name).stem]


def _check(row: dict, attack: hostile.Attack) -> None:
    assert row["status"] == attack.status, row
    best = float(row["max_score"])
    assert best > 0, row
    assert float(row["score"]) == (best if attack.full_marks else 0), row


@pytest.mark.parametrize("assignment,name,attack", FEW)
def test_every_notebook_honest_stub_and_attacks(batch, assignment, name, attack):
    student = f"few-{_slug(attack)}-{assignment}-{Path(name).stem}"
    _check(_row(batch, student, assignment, name), batch["expected"][student])


@pytest.mark.parametrize("attack", FULL)
def test_attack_on_one_notebook(batch, attack):
    student = f"full-{_slug(attack)}"
    _check(_row(batch, student, *SMALL), batch["expected"][student])


def test_missing_notebooks_are_reported(batch):
    rows = {k: r for k, r in batch["rows"].items() if k[0] == "partial"}
    names = sorted(Path(nb.name).stem for nb in NOTEBOOKS if nb.assignment == "ch01_data")
    assert sorted(k[2] for k in rows) == names
    statuses = {k[2]: r["status"] for k, r in rows.items()}
    assert statuses.pop(Path(NOTEBOOKS[0].name).stem) == "ok"
    assert set(statuses.values()) == {"missing"}
    assert all(float(r["score"]) == 0 for k, r in rows.items() if r["status"] == "missing")


def test_machine_left_clean_and_input_untouched(batch):
    assert batch["processes"] == [], "sandbox processes still running"
    assert batch["markers"] == [], "an attack left a file behind"
    assert _inputs_digest(batch["base"]) == batch["digest_before"]
    assert sorted(p.name for p in batch["out"].iterdir()) == ["feedback", "grades.csv"]
    assert not list(Path("/tmp").glob("grade-*")), "the grader's temporary folders remain"


def test_summary_and_feedback(batch):
    assert "graded" in batch["output"] and "slowest:" in batch["output"]
    page = batch["out"] / "feedback" / "few-honest-ch02_tokenizer-01_pretokenize" / "ch02_tokenizer" / "01_pretokenize.html"
    text = page.read_text()
    assert "test_merge" in text and "passed" in text and "http" not in text
    stub = page.parents[2] / "few-stubs-ch02_tokenizer-01_pretokenize" / "ch02_tokenizer" / "01_pretokenize.html"
    assert "NotImplementedError" in stub.read_text()
    warned = page.parents[2] / f"full-{_slug('warnings in the graded functions, honest')}" / "ch02_tokenizer" / "01_pretokenize.html"
    assert "slow path" in warned.read_text() and "not scored" in warned.read_text()
    withheld = page.parents[2] / f"full-{_slug('reference: import_module wrapper')}" / "ch02_tokenizer" / "01_pretokenize.html"
    assert "write it yourself" in withheld.read_text()
    assert "Reread <a href=\"file://" in stub.read_text() and "ch02_tokenizer.html#the-bpe-training-algorithm" in stub.read_text()


def test_rerun_gives_the_same_rows(batch, tmp_path):
    """The whole attack set again (a second full batch would double the test time)."""
    for top, out, timeout in (("submitted", "out", TIMEOUT), ("submitted-timeouts", "out-t", SHORT_TIMEOUT)):
        for folder in (batch["base"] / top).glob("full-*"):
            shutil.copytree(folder, tmp_path / top / folder.name)
        _grade(tmp_path / top, tmp_path / out, timeout=timeout)
    rows = {**_rows(tmp_path / "out"), **_rows(tmp_path / "out-t")}
    assert rows and rows == {k: r for k, r in batch["rows"].items() if k[0].startswith("full-")}


def test_honest_scores_equal_stock_nbgrader(tmp_path):
    """Honest, stub and half-answered submissions of chapter 2: the same points per notebook;
    ``--gradebook`` records them where formgrader reads them."""
    from nbgrader.api import Gradebook

    assignment = "ch02_tokenizer"
    course = tmp_path / "course"
    (course / "source").mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.source_directory = 'source'\nc.Execute.timeout = 120\n")
    shutil.copytree(ROOT / "solutions" / assignment, course / "source" / assignment)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

    def nbgrader(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--log-level=WARN"], cwd=course,
                              env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout + done.stderr
    nbgrader("db", "assignment", "add", assignment)
    nbgrader("generate_assignment", assignment, "--force")
    notebooks = [nb for nb in NOTEBOOKS if nb.assignment == assignment]
    for student in ("honest", "stub", "half"):
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True)
        for nb in notebooks:
            answers = {"honest": nb.answers, "stub": {},
                       "half": dict(list(nb.answers.items())[::2])}[student]
            (folder / nb.name).write_text(json.dumps(nb.submission(answers)))
    ours_db = tmp_path / "ours.db"
    shutil.copy(course / "gradebook.db", ours_db)
    _grade(course / "submitted", tmp_path / "out", "--gradebook", f"sqlite:///{ours_db}")
    nbgrader("autograde", assignment, "--force")
    ours = _rows(tmp_path / "out")
    with Gradebook(f"sqlite:///{ours_db}") as gb:  # --gradebook recorded the same scores
        for (student, _, stem), row in ours.items():
            assert gb.find_submission_notebook(stem, assignment, student).score == float(row["score"])
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student in ("honest", "stub", "half"):
            for nb in notebooks:
                stem = Path(nb.name).stem
                stock = gb.find_submission_notebook(stem, assignment, student).score
                assert float(ours[student, assignment, stem]["score"]) == stock, (student, stem)
    assert float(ours["half", assignment, "01_pretokenize"]["score"]) > 0  # a real middle case


NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--"]


def _submit(submitted: Path, attacks: list[hostile.Attack]) -> None:
    """Each attack as one student submitting the small notebook."""
    for attack in attacks:
        folder = submitted / _slug(attack.name) / SMALL_NB.assignment
        folder.mkdir(parents=True)
        for name, data in attack.files.items():
            (folder / name).write_bytes(data)


def _check_small_batch(submitted: Path, out: Path, attacks: list[hostile.Attack], before: str) -> None:
    """Every attack got its status and score; the input is untouched, nothing written elsewhere."""
    rows = _rows(out)
    for attack in attacks:
        _check(rows[_slug(attack.name), SMALL_NB.assignment, Path(SMALL_NB.name).stem], attack)
    assert _tree_digest(submitted) == before
    assert sorted(p.name for p in out.iterdir()) == ["feedback", "grades.csv"]
    assert not list(ROOT.glob(f"*{hostile.MARKER}*"))


def _nobody_can_run_the_venv() -> bool:
    python = ROOT / ".venv" / "bin" / "python"
    probe = subprocess.run([*NOBODY, "sh", "-c", f"exec {python} -c 'import tqdm, torch'"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.parametrize("who", ["uid 65534", "root, --sandbox user"])
def test_user_namespace_mode(who):
    """Mode user: user namespaces, the course read-only, solutions and OUT_DIR out of reach.

    Run as uid 65534 where that uid can use the venv (here the interpreter lives under
    /root, so it cannot), and as root forced into the same mode, which runs the same code."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root (to switch users or to force the mode)")
    if who == "uid 65534" and not _nobody_can_run_the_venv():
        pytest.skip("uid 65534 cannot run the venv's interpreter on this machine")
    base = Path(tempfile.mkdtemp(prefix="grader-user-"))
    elsewhere = _elsewhere()
    _second_copy(elsewhere)
    try:
        submitted, out = base / "submitted", base / "out"
        attacks = {a.name: a for a in hostile.full_set(SMALL_NB, ROOT, submitted, out)}
        picked = [hostile.few(SMALL_NB)[0], hostile.few(SMALL_NB)[1], attacks["read solutions"],
                  attacks["write outside"], attacks["socket"], attacks["fork storm in tests"],
                  attacks["reference: import_module wrapper"],
                  *hostile.view_attacks(SMALL_NB, ROOT, elsewhere)]
        _submit(submitted, picked)
        out.mkdir()
        for path in [base, *base.rglob("*")]:
            os.chmod(path, 0o777 if path.is_dir() else 0o666)
        before = _tree_digest(submitted)
        if who == "uid 65534":
            output = _grade(submitted, out, user=NOBODY)
        else:
            output = _grade(submitted, out, "--sandbox", "user")
        assert "sandbox mode: user" in output, output
        _check_small_batch(submitted, out, picked, before)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(elsewhere, ignore_errors=True)


def test_fallback_mode_without_namespaces(tmp_path):
    """Mode none (no namespaces): the audit hook alone keeps the hidden paths and sockets away."""
    submitted, out = tmp_path / "submitted", tmp_path / "out"
    attacks = {a.name: a for a in hostile.full_set(SMALL_NB, ROOT, submitted, out)}
    targets = [str(submitted / "honest" / SMALL_NB.assignment / SMALL_NB.name), str(out / "grades.csv")]
    write = hostile.Attack("write into submissions and grades", "ok", False, {SMALL_NB.name: json.dumps(
        hostile.with_prelude(SMALL_NB, hostile.WRITE_OUTSIDE.format(targets=targets))).encode()})
    picked = [hostile.few(SMALL_NB)[0], attacks["read solutions"], attacks["read gradebook"],
              write, attacks["socket"]]
    _submit(submitted, picked)
    before = _tree_digest(submitted)
    assert "sandbox mode: none" in _grade(submitted, out, "--sandbox", "none")
    _check_small_batch(submitted, out, picked, before)


def _clone(top: Path) -> Path:
    """The grader, the package and the small notebook's chapter, with a venv of its own
    (its interpreter under ``top`` too; the libraries come from this one through a .pth)."""
    course = top / "course"
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "autograder", "tinygpt", f"solutions/{SMALL_NB.assignment}",
                             f"exercises/{SMALL_NB.assignment}"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split("\n")
    for name in filter(None, listed):
        (course / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, course / name)
    venv = course / ".venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python3*/site-packages"))
    here = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (site / "course.pth").write_text(f"{course}\n{here}\n")
    return course


def test_course_under_tmp_with_spaces():
    """A checkout and its interpreter under /tmp, in a folder with a space: the sandbox's own
    /tmp must not hide them (every notebook scored 0 "crashed" and the run exited 0)."""
    top = Path(tempfile.mkdtemp(prefix="grader clone ", dir="/tmp"))
    try:
        course = _clone(top)
        attacks = hostile.full_set(SMALL_NB, course, top / "submitted", top / "out")
        picked = [*hostile.few(SMALL_NB)[:2], next(a for a in attacks if a.name.startswith("reference: "))]
        _submit(top / "submitted", picked)
        done = subprocess.run([str(course / "autograder" / "grade"), str(top / "submitted"), "--out",
                               str(top / "out"), "--course", str(course)], capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        rows = _rows(top / "out")
        for attack in picked:
            _check(rows[_slug(attack.name), SMALL_NB.assignment, Path(SMALL_NB.name).stem], attack)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_a_sandbox_that_cannot_import_the_course_stops_grading(tmp_path):
    """Checked once before any student: a clear error naming the course, exit 2, no grades."""
    course = _clone(tmp_path)
    (course / "tinygpt" / "__init__.py").write_text("raise ImportError('broken on purpose')\n")
    _submit(tmp_path / "submitted", hostile.few(SMALL_NB)[:1])
    done = subprocess.run([str(course / "autograder" / "grade"), str(tmp_path / "submitted"), "--out",
                           str(tmp_path / "out"), "--course", str(course)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot grade" in done.stderr and str(course) in done.stderr and "broken on purpose" in done.stderr
    assert not (tmp_path / "out" / "grades.csv").exists()


def test_no_namespaces_needs_an_explicit_flag(tmp_path):
    """Where no sandbox can be built, a class is graded only with --sandbox none."""
    _submit(tmp_path / "submitted", hostile.few(SMALL_NB)[:1])
    env = {"PATH": "/nonexistent", "HOME": str(tmp_path)}  # no unshare, no setpriv: mode none
    done = subprocess.run([sys.executable, str(ROOT / "autograder" / "grade.py"), str(tmp_path / "submitted"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 2 and "--sandbox none" in done.stderr, done.stderr
    assert not (tmp_path / "out" / "grades.csv").exists()


def _cell(kind: str, grade_id: str, text: str, points: float = 0) -> dict:
    meta = {"grade_id": grade_id, "solution": kind == "answer", "grade": kind == "test",
            "locked": kind != "answer", **({"points": points} if kind == "test" else {})}
    return {"cell_type": "code", "metadata": {"nbgrader": meta}, "source": text, "outputs": [],
            "execution_count": None}


def test_warnings_are_feedback_but_a_test_writing_stderr_fails(tmp_path):
    """The learner's warnings and stderr are shown, not scored; the test's own stderr still fails it."""
    sys.path.insert(0, str(ROOT / "autograder"))
    import engine
    import sandbox

    answer = ("import sys, warnings\ndef f():\n    warnings.warn('a correct answer may warn')\n"
              "    print('note to self', file=sys.stderr)\n    return 1\nwarnings.warn('the answer cell warns')\n"
              "print('a print of my own')\n")
    hidden = "assert f() == 1\n### BEGIN HIDDEN TESTS\nassert f() + 1 == 3, 'secret'\n### END HIDDEN TESTS\n"
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        _cell("answer", "answer_f", answer),
        _cell("test", "test_f", "assert f() == 1\n", 2),
        _cell("test", "test_noisy", "import sys\nassert f() == 1\nprint('oops', file=sys.stderr)\n", 1),
        _cell("test", "test_hidden", hidden, 1)]}
    path = tmp_path / "warn.ipynb"
    path.write_text(json.dumps(notebook))
    with engine.View(tmp_path, sandbox.detect_mode()) as view:
        view.check([path], sandbox.Limits())
        result = engine.grade_notebook(path, path, None, view)
    tests = {t.grade_id: t for t in result.tests}
    assert result.status == "ok" and tests["test_f"].score == 2, vars(result)
    assert "a correct answer may warn" in tests["test_f"].said and "note to self" in tests["test_f"].said
    assert "the answer cell warns" in result.said["answer_f"] and "a print of my own" in result.said["answer_f"]
    assert tests["test_noisy"].score == 0 and "wrote to stderr: oops" in tests["test_noisy"].message
    message = tests["test_hidden"].message  # where, but not what: the hidden line's operands stay hidden
    assert tests["test_hidden"].score == 0 and "in a hidden test (line 2)" in message, message
    assert "f() + 1" not in message and "got:" not in message, message


def _mistaken(assignment: str, name: str, edits: dict[str, tuple[str, str]]) -> dict:
    """The honest answers of a notebook with ``edits``: grade_id -> (text, replacement)."""
    nb = _notebook(assignment, name)
    answers = dict(nb.answers)
    for grade_id, (old, new) in edits.items():
        assert old in answers[grade_id], (grade_id, old)
        answers[grade_id] = answers[grade_id].replace(old, new, 1)
    return nb.submission(answers)


MISTAKES = {  # issue 24: one per chapter; (notebook, edits, test -> what its message must say)
    "ch01 a string comparison": (("ch01_data", "01_clean.ipynb"), {"normalize": ("return ", "return 'x' + ")},
                                 {"test_normalize": ["the two sides differ", "got:", "expected:",
                                                     "first difference at index 0", "at line 2: assert normalize("]}),
    "ch02 a syntax error and a dict": (("ch02_tokenizer", "01_pretokenize.ipynb"), {
        "pretokenize": ("def pretokenize(text: str,", "def pretokenize(text: str"),
        "get_stats": ("counts.get(pair, 0) + 1", "1")},
        {"test_pretokenize": ["depends on your `pretokenize` cell"],
         "test_get_stats": ["got:      {(1, 2): 1", "expected: {(1, 2): 2", "key (1, 2): 1 against 2",
                            "at line 2: assert get_stats([1, 2, 3, 1, 2])"]}),
    "ch03 a tensor comparison": (("ch03_pretraining", "01_attention.ipynb"),
                                 {"causal_attention": (" / math.sqrt(q.shape[-1])", "")},
                                 {"test_causal_attention": ["torch.allclose is False", "tensor of shape (1, 2, 5, 4)",
                                                            "first difference at index (0, 0, 1, 0)",
                                                            "max abs difference", "at line 8: assert torch.allclose"]}),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_feedback_says_what_failed_and_where(case, tmp_path):
    """A failed assert shows both sides (tensors summarised) and its line; a broken answer
    cell is named with its line, and the tests it breaks say they depend on it; the
    self-check ends with a line per notebook naming the book section to reread."""
    (assignment, name), edits, expected = MISTAKES[case]
    folder = tmp_path / "exercises" / assignment
    folder.mkdir(parents=True)
    (tmp_path / "solutions").symlink_to(ROOT / "solutions")
    (folder / name).write_text(json.dumps(_mistaken(assignment, name, edits)))
    done = subprocess.run([sys.executable, str(ROOT / "autograder" / "selfcheck.py"), str(folder / name)],
                          capture_output=True, text=True, timeout=600)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    for test, wanted in expected.items():
        block = out[out.index(f"  {test} "):]
        block = block[:block.index("\n  test_")] if "\n  test_" in block else block
        for text in wanted:
            assert text in block, (text, block)
    if "pretokenize" in edits:
        assert "! your `pretokenize` cell did not run to its end: SyntaxError on line 2:" in out, out
        assert f"{Path(name).stem}: " in out and "first fix your `pretokenize` cell" in out, out
    else:
        assert f"{Path(name).stem}: " in out and "reread book/" in out and "section \u201c" in out, out
