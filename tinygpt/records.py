"""The committed measurements the book quotes: ``bench/results/*.json``, read in one place.

Shared by every chapter's page (chapters 1-3 first). A page never types a measured
figure into its prose: it calls ``glue_records("tokenizer_train")`` in a hidden cell,
which glues every scalar of that record under its path
(``tokenizer_train.ratio_ours_over_rustbpe``, ``pretraining_step.machine.cpu_model``),
and the prose quotes them with myst-nb's role, ``{glue:text}`key:.1f```. Rerunning a
benchmark and rebuilding the book changes the page; ``quoted`` lists what a page quotes,
so a test can check every figure against its record.
"""
from __future__ import annotations

import json
import re
from typing import Iterator

from tinygpt.runtime import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results"
GLUE_ROLE = re.compile(r"\{glue:text\}`([^`]+)`")
Scalar = int | float | str | bool


def record(name: str) -> dict:
    """The record ``bench/results/<name>.json``; a clear error names what exists."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in RESULTS.glob("*.json")))
        raise FileNotFoundError(f"no record {name!r} in {RESULTS} (there are: {known})")
    return json.loads(path.read_text(encoding="utf-8"))


def _leaves(value, path: str) -> Iterator[tuple[str, Scalar]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _leaves(inner, f"{path}.{key}")
    elif isinstance(value, (int, float, str, bool)):
        yield path, value


def figures(*names: str) -> dict[str, Scalar]:
    """Every scalar of the named records (lists left out), keyed by its dotted path."""
    return {key: value for name in names for key, value in _leaves(record(name), name)}


def glue_records(name: str) -> dict:
    """Glue every figure of one record for the page's prose; returns the record."""
    from myst_nb import glue

    for key, value in figures(name).items():
        glue(key, value, display=False)
    return record(name)


def quoted(page_text: str) -> list[tuple[str, str]]:
    """(key, format spec) of every ``{glue:text}`` role in a page, in order."""
    pairs = []
    for role in GLUE_ROLE.findall(page_text):
        key, _, spec = role.rpartition(":") if ":" in role else (role, "", "")
        pairs.append((key, spec))
    return pairs
