"""The import graph runs one way, like the course (design section 2, "Layers").

Every import of course code counts: ``import tinygpt.x``, ``from tinygpt.x import y``,
``from tinygpt import x``, relative imports (``from ..x import y``), imports inside
functions and ``importlib.import_module("tinygpt.x")``. A part of the package may import
only parts of equal or lower rank, and parts of equal rank may not import each other
both ways (no cycles). The cases at the end prove the checker finds each kind.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

# Rank of each part of the package: a module may import only equal or lower ranks.
# Shared utilities are 0; chapter k's step is k; checks for chapter k (checks/chKK.py) sit
# on step k and the shared checks (checks/common.py) on 0.
RANKS = {"runtime": 0, "records": 0, "world": 0, "plots": 0, "kernels": 0, "corpus": 1, "curation": 1,
         "tokenizer": 2, "pretraining": 3, "posttraining": 4, "evaluation": 5, "deployment": 6, "engine": 9, "service": 10,
         "train": 100, "align": 100, "export": 100, "quantize": 100, "evaluate": 100}  # drivers (entry points): above every step


def _module_name(path: Path, package: Path) -> list[str]:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imported(path: Path, package: Path):
    """The dotted names of course modules that ``path`` imports (however it spells it)."""
    me = _module_name(path, package)
    here = me if path.name == "__init__.py" else me[:-1]  # the package relative imports start in
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            module = ".".join(base + (node.module.split(".") if node.module else []))
            yield module
            for alias in node.names:  # `from tinygpt import corpus` imports a module
                candidate = package.parent.joinpath(*module.split("."), alias.name)
                if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
                    yield f"{module}.{alias.name}"
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", ""))
              == "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
            yield str(node.args[0].value)


def _part(dotted: list[str]) -> str | None:
    """The part a module belongs to ("checks.ch03" for a chapter's checks), or None for the root."""
    if len(dotted) < 2:
        return None
    if dotted[1] == "checks":
        return "checks." + dotted[2] if len(dotted) > 2 else None
    return dotted[1]


def _rank(part: str) -> int:
    if part.startswith("checks."):
        name = part.split(".")[1]
        return int(name[2:]) if name.startswith("ch") and name[2:].isdigit() else 0
    if part not in RANKS:
        raise KeyError(f"part {part!r} of the package has no rank: add it to RANKS")
    return RANKS[part]


def violations(package: Path) -> list[str]:
    """Every import of a later step, and every cycle between parts, in ``package``."""
    found, edges = [], {}
    for path in sorted(package.rglob("*.py")):
        mine = _part(_module_name(path, package))
        if mine is None:  # tinygpt/__init__.py (a docstring) and checks/__init__.py
            continue
        for module in _imported(path, package):
            dotted = module.split(".")
            theirs = _part(dotted) if dotted[0] == package.name else None
            if theirs is None or theirs == mine:
                continue
            edges.setdefault(mine, set()).add(theirs)
            if _rank(theirs) > _rank(mine):
                found.append(f"{path.relative_to(package.parent)} imports {module} (a later step)")
    for start in sorted(edges):  # a path back to `start` is a cycle
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in sorted(edges.get(node, ())):
                if nxt == start:
                    found.append("cycle between parts: " + " -> ".join(trail + [start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
    return found


def test_steps_import_only_earlier_steps():
    assert violations(ROOT / "tinygpt") == []


def test_autograder_imports_no_course_code():
    for path in (ROOT / "autograder").rglob("*.py"):
        assert not any(m.split(".")[0] == "tinygpt" for m in _imported(path, ROOT / "autograder")), path


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "tinygpt"
    for name, text in {"__init__.py": "", "tokenizer/__init__.py": "",
                       "pretraining/__init__.py": "", "pretraining/model.py": "",
                       "corpus.py": "", "curation/__init__.py": "", "curation/clean.py": "",
                       "checks/__init__.py": "", "checks/ch02.py": "", **files}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    return package


@pytest.mark.parametrize("files, expected", [
    ({"tokenizer/bpe.py": "import tinygpt.pretraining.model\n"}, "imports tinygpt.pretraining.model"),
    ({"tokenizer/bpe.py": "from tinygpt.pretraining.model import GPT\n"}, "a later step"),
    ({"tokenizer/bpe.py": "from tinygpt import pretraining\n"}, "imports tinygpt.pretraining"),
    ({"tokenizer/bpe.py": "from ..pretraining import model\n"}, "imports tinygpt.pretraining"),
    ({"tokenizer/__init__.py": "from .. import pretraining\n"}, "imports tinygpt.pretraining"),
    ({"tokenizer/bpe.py": "def f():\n    from tinygpt.pretraining.model import GPT\n"},
     "a later step"),
    ({"tokenizer/bpe.py": "import importlib\nm = importlib.import_module('tinygpt.pretraining')\n"},
     "a later step"),
    ({"checks/ch02.py": "from tinygpt.pretraining import model\n"}, "checks/ch02.py imports"),
    ({"corpus.py": "from tinygpt.curation.clean import x\n",
      "curation/clean.py": "from tinygpt.corpus import y\n"}, "cycle between parts: corpus -> curation -> corpus"),
    ({"corpus.py": "from .curation import clean\n",
      "curation/clean.py": "from .. import corpus\n"}, "cycle between parts"),
])
def test_the_checker_finds_each_kind_of_violation(tmp_path, files, expected):
    found = violations(_package(tmp_path, files))
    assert any(expected in v for v in found), found


def test_the_checker_allows_imports_down_and_within_a_part(tmp_path):
    package = _package(tmp_path, {"pretraining/step.py": "from . import model\nfrom ..tokenizer import bpe\n",
                                  "tokenizer/bpe.py": "from tinygpt.corpus import x\n",
                                  "checks/ch02.py": "from tinygpt.tokenizer import bpe\n"})
    assert violations(package) == []


def test_an_unranked_part_is_an_error(tmp_path):
    with pytest.raises(KeyError, match="add it to RANKS"):
        violations(_package(tmp_path, {"serving/__init__.py": "", "serving/x.py": "import tinygpt.corpus\n"}))
