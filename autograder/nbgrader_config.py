"""nbgrader configuration of the course (design section 6).

The course folder is the repository root: nbgrader's source notebooks are the solution
notebooks in ``solutions/`` and the student release goes to ``exercises/``.
Submissions for grading go under ``autograder/submitted/`` (ignored by git).
"""
import sys
from pathlib import Path

from nbgrader.converters import GenerateAssignment
from nbgrader.preprocessors import ClearSolutions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from release_markers import MoveExportMarkers  # noqa: E402 - beside this file

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

ROOT = Path(__file__).resolve().parent.parent
c.CourseDirectory.root = str(ROOT)
c.CourseDirectory.course_id = "raw-text-to-streamed-answer"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = "autograder/submitted"
c.CourseDirectory.autograded_directory = "autograder/autograded"
c.CourseDirectory.feedback_directory = "autograder/feedback"
c.CourseDirectory.db_url = f"sqlite:///{ROOT / 'autograder' / 'gradebook.db'}"
# Model cells train small tokenizers; nbgrader's default of 30 s per cell is too tight
# on a slow laptop.
c.Execute.timeout = 120
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
# Every released notebook starts with a cell saying it is generated and from where.
c.IncludeHeaderFooter.header = str(ROOT / "autograder" / "release_header.ipynb")
# Learners' code is not exported: the release moves each `#| export` line into the cell's
# metadata, where the grader still finds it (release_markers.py).
_steps = GenerateAssignment.class_traits()["preprocessors"].default()
c.GenerateAssignment.preprocessors = (_steps[:_steps.index(ClearSolutions) + 1]
                                      + [MoveExportMarkers] + _steps[_steps.index(ClearSolutions) + 1:])
