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
FULL = [a.name for a in hostile.full_set(SMALL_NB, ROOT, Path("/x"), Path("/y"))]
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
    for attack in hostile.full_set(SMALL_NB, ROOT, submitted, out):
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
    try:
        submitted, out = base / "submitted", base / "out"
        attacks = {a.name: a for a in hostile.full_set(SMALL_NB, ROOT, submitted, out)}
        picked = [hostile.few(SMALL_NB)[0], hostile.few(SMALL_NB)[1], attacks["read solutions"],
                  attacks["write outside"], attacks["socket"], attacks["fork storm in tests"]]
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
