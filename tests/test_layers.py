"""The import graph runs one way, like the course (design section 2, "Layers")."""
from __future__ import annotations

import ast

from conftest import ROOT

# Rank of each part of the package: a module may import only equal or lower ranks.
# Shared utilities are 0; chapter k's step is k; checks for chapter k sit on step k.
RANKS = {"runtime": 0, "world": 0, "plots": 0, "corpus": 1, "curation": 1, "tokenizer": 2,
         "pretraining": 3,
         "train": 100}  # "train" is a driver (an entry point): above every step


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)




def test_steps_import_only_earlier_steps():
    for path in (ROOT / "tinygpt").rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("").parts
        if len(rel) == 1 or rel[-1] == "__init__" and len(rel) == 2:
            continue
        own = "checks" if rel[1] == "checks" else rel[1]
        mine = int(path.stem[2:]) if own == "checks" and path.stem.startswith("ch") else (
            0 if own == "checks" else RANKS[own])
        for module in _imports(path):
            if module.startswith("tinygpt."):
                target = module.split(".")[1]
                theirs = 0 if target == "checks" else RANKS[target]
                assert theirs <= mine, f"{path.relative_to(ROOT)} imports {module} (a later step)"


def test_autograder_imports_no_course_code():
    for path in (ROOT / "autograder").rglob("*.py"):
        assert not any(m.split(".")[0] == "tinygpt" for m in _imports(path)), path
