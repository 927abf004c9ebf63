"""tools/split.py: an instructor folder with everything, a student folder without the
solutions and hidden tests in which `make check` still grades the exercises."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import split  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("split")
    counts = split.split(base / "student", base / "instructor")
    return base / "student", base / "instructor", counts


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_the_instructor_gets_every_tracked_file_and_the_student_no_solutions(folders):
    student, instructor, counts = folders
    tracked = split.tracked_files()
    assert _files(instructor) == tracked and counts["instructor"] == len(tracked)
    got = _files(student)
    assert got == [f for f in tracked if split.for_students(f)] and counts["student"] == len(got)
    assert not any(f.startswith(("solutions/", "tests/", "tools/")) for f in got)
    for needed in ("exercises/ch01_data/01_clean.ipynb", "book/ch03_pretraining.md",
                   "tinygpt/checks/ch02.py", "autograder/selfcheck.py", "Makefile"):
        assert needed in got, needed
    assert (student / "README.md").read_bytes() == (ROOT / "README.md").read_bytes()


def test_no_student_notebook_holds_a_solution_and_the_leak_scan_can_fail(folders, tmp_path):
    student, instructor, _ = folders
    solutions = {p.read_bytes() for p in (ROOT / "solutions").rglob("*.ipynb")}
    assert split.leaks(student, solutions) == []
    assert "solutions/ch01_data/01_clean.ipynb" in split.leaks(instructor, solutions)
    # a solution notebook renamed into the exercises is caught by its bytes alone
    copy = tmp_path / "exercises" / "mine.ipynb"
    copy.parent.mkdir()
    shutil.copy(ROOT / "solutions" / "ch02_tokenizer" / "01_pretokenize.ipynb", copy)
    assert split.leaks(tmp_path, solutions) == ["exercises/mine.ipynb"]


def test_make_check_grades_the_release_in_the_student_folder(folders):
    student, _, _ = folders
    done = subprocess.run([sys.executable, "autograder/selfcheck.py",
                           "exercises/ch02_tokenizer/01_pretokenize.ipynb"],
                          cwd=student, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "(tests from exercises/ch02_tokenizer/01_pretokenize.ipynb)" in done.stdout
    assert "total                        0/7" in done.stdout


@pytest.mark.parametrize("where", ["non-empty", "inside", "same"])
def test_unusable_folders_are_refused_before_anything_is_written(tmp_path, where):
    keep = tmp_path / "full" / "notes.txt"
    keep.parent.mkdir()
    keep.write_text("mine")
    student = {"non-empty": keep.parent, "inside": ROOT / "_split_student",
               "same": tmp_path / "one"}[where]
    instructor = tmp_path / "one" if where == "same" else tmp_path / "instructor"
    with pytest.raises(SystemExit, match="error: "):
        split.split(student, instructor)
    assert keep.read_text() == "mine" and sorted(keep.parent.iterdir()) == [keep]
    assert not (tmp_path / "instructor").exists() and not (ROOT / "_split_student").exists()
