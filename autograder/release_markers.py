"""The student release without export markers: an nbgrader preprocessor for generate_assignment.

In the instructor's notebooks a code cell whose first line is ``#| export pkg.module`` is
exported into the package (``tools/generate.py``). Learners' code is never exported, so
the release drops that line; the module it named moves into the cell's metadata
(``metadata.tinygpt.export``) with the names the instructor's cell defines
(``metadata.tinygpt.defines``), where the grader still finds them
(``assemble.export_target``, ``withhold.graded_units``) to withhold those units, in a
student repository too, whatever helpers a learner adds to the cell. Runs after
ClearSolutions (the stub keeps every signature) and before the checksums are computed
(``nbgrader_config.py``).
"""
from __future__ import annotations

import sys
from pathlib import Path

from nbgrader.preprocessors import NbGraderPreprocessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
import assemble  # noqa: E402 - beside this file


class MoveExportMarkers(NbGraderPreprocessor):
    """``#| export X`` first lines become ``metadata.tinygpt = {"export": X, "defines": [...]}``."""

    def preprocess_cell(self, cell, resources, index):
        module = assemble.export_target(cell) if cell.cell_type == "code" else None
        if module is not None and cell.source.startswith(assemble.EXPORT):
            cell.source = cell.source.split("\n", 1)[1] if "\n" in cell.source else ""
            cell.metadata.setdefault("tinygpt", {}).update(
                export=module, defines=assemble.top_level_names(cell.source))
        return cell, resources
