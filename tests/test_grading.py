"""The grading round trip, with stock nbgrader and with the learner's self-check.

For every notebook of every chapter: the generated release (the stubs) scores 0, the
solution scores full marks, and a submission that memorises the answers of the visible
tests scores 0 on every test cell once the hidden tests run.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cheats import memorising_answers
from conftest import ROOT

pytestmark = pytest.mark.slow
# Every assignment by default; TINYGPT_ASSIGNMENTS=ch01_data,ch02_tokenizer narrows a local run.
ASSIGNMENTS = [a for a in sorted(p.name for p in (ROOT / "solutions").iterdir()
                                 if p.name.startswith("ch"))
               if a in os.environ.get("TINYGPT_ASSIGNMENTS", a).split(",")]


def _nbgrader(course: Path, *args: str) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--log-level=WARN"],
                            cwd=course, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr


def _submit(course: Path, student: str, assignment: str, notebooks: dict[str, dict]) -> None:
    folder = course / "submitted" / student / assignment
    folder.mkdir(parents=True)
    for name, nb in notebooks.items():
        (folder / name).write_text(json.dumps(nb))


def _answers_replaced(nb: dict, answers: dict[str, str]) -> dict:
    nb = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict:
    """Run stock `nbgrader autograde` on three students per assignment; return cell scores."""
    from nbgrader.api import Gradebook

    course = tmp_path_factory.mktemp("course")
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.source_directory = 'source'\n"
        "c.Execute.timeout = 120\n")
    shutil.copytree(ROOT / "solutions", course / "source")
    for assignment in ASSIGNMENTS:
        _nbgrader(course, "db", "assignment", "add", assignment)
        _nbgrader(course, "generate_assignment", assignment, "--force")
        release = {p.name: json.loads(p.read_text())
                   for p in sorted((ROOT / "exercises" / assignment).glob("*.ipynb"))}
        solution = {p.name: json.loads(p.read_text())
                    for p in sorted((ROOT / "solutions" / assignment).glob("*.ipynb"))}
        cheat = {name: _answers_replaced(nb, memorising_answers(solution[name], release[name]))
                 for name, nb in release.items()}
        for student, notebooks in (("stub", release), ("solution", solution), ("cheat", cheat)):
            _submit(course, student, assignment, notebooks)
        _nbgrader(course, "autograde", assignment, "--force")
    scores = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for assignment in ASSIGNMENTS:
            for nb in gb.find_assignment(assignment).notebooks:
                for student in ("stub", "solution", "cheat"):
                    sub = gb.find_submission_notebook(nb.name, assignment, student)
                    scores[assignment, nb.name, student] = {
                        g.name: (g.score, g.max_score) for g in sub.grades}
    return scores


NOTEBOOKS = [(a, p.stem) for a in ASSIGNMENTS
             for p in sorted((ROOT / "solutions" / a).glob("*.ipynb"))]
# Visible tests that watch side effects, which a replay of recorded answers cannot fake.
REPLAY_CANNOT_PASS = {
    "test_run_pipeline": "the check records which documents each step is called with",
    # Units that build working modules out of modules: a replay of recorded values has no
    # module to give back (QuantLinear.from_linear is a classmethod; quantize_model swaps
    # layers in place; load_quantized returns a new model).
    "test_quant_linear": "QuantLinear.from_linear builds a module from an nn.Linear",
    "test_quantize_model": "quantize_model replaces a model's layers in place",
    "test_save_load": "load_quantized returns a new model built from files",
    "test_kv_cache": "KVCache.update returns views of the cache's own tensors, not recorded copies",
    "test_forward_cached": "forward_cached writes into and moves the cache it is given",
    "test_decode_step": "decode_step appends to the cache it is given",
    "test_generate": "generate returns a live iterator of events, which a recording cannot hold",
    "test_submit": "the scheduler's queue changes with every submit: a replay keeps no live queue",
    "test_admission": "admit moves requests between the scheduler's own queue and running set",
    "test_step": "step streams events out of live requests that it admits, runs and releases",
    "test_paged_batch": "the view writes into the blocks of the cache it is given (forward_cached over PagedKVCache.view)",
    "test_keys": "the check counts the comparisons a key store makes through the compare it is given",
    "test_validate": "refusals are GatewayError exceptions whose status and param a replay cannot rebuild",
    "test_bucket": "eight threads take from one bucket at once: the replay's call order is not the recorded one",
}


@pytest.mark.parametrize("assignment,notebook", NOTEBOOKS)
def test_stub_scores_zero_and_solution_scores_full(graded, assignment, notebook):
    stub = graded[assignment, notebook, "stub"]
    solution = graded[assignment, notebook, "solution"]
    assert stub and all(score == 0 for score, _ in stub.values()), stub
    assert all(score == best > 0 for score, best in solution.values()), solution


@pytest.mark.parametrize("assignment,notebook", NOTEBOOKS)
def test_memorised_visible_answers_fail_the_hidden_tests(graded, assignment, notebook):
    cheat = graded[assignment, notebook, "cheat"]
    assert cheat and all(score == 0 for score, _ in cheat.values()), cheat


@pytest.mark.parametrize("assignment,notebook", NOTEBOOKS)
def test_memorised_answers_do_pass_the_visible_tests(assignment, notebook, tmp_path):
    """Without its hidden tests the cheat would pass: the hidden tests are what stop it."""
    sys.path.insert(0, str(ROOT / "autograder"))
    from sandbox import Limits
    from selfcheck import check_notebook

    release = ROOT / "exercises" / assignment / f"{notebook}.ipynb"
    solution = ROOT / "solutions" / assignment / f"{notebook}.ipynb"
    threads = torch.get_num_threads()
    torch.set_num_threads(Limits().threads)  # record on the sandbox's threads, as it will replay
    try:
        answers = memorising_answers(json.loads(solution.read_text()), json.loads(release.read_text()))
    finally:
        torch.set_num_threads(threads)
    cheat = _answers_replaced(json.loads(release.read_text()), answers)
    path = tmp_path / release.name
    path.write_text(json.dumps(cheat))
    result = check_notebook(path)  # not under exercises/: graded by its own visible tests
    failed = [t.grade_id for t in result.tests if t.score < t.points]
    assert result.tests and set(failed) <= set(REPLAY_CANNOT_PASS), [
        vars(t) for t in result.tests if t.grade_id in failed]


def test_self_check_command_reports_points():
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    stub = subprocess.run(["make", "--no-print-directory", "check", "CH=02", "NB=01"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert stub.returncode != 0
    assert "test_get_stats" in stub.stdout and "0/7" in stub.stdout, stub.stdout + stub.stderr
    good = subprocess.run([sys.executable, "autograder/selfcheck.py", "solutions/ch02_tokenizer"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert good.returncode == 0 and "course total: 33/33" in good.stdout, good.stdout
