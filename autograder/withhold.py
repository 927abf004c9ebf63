"""The package a graded notebook sees: the course's, with what that notebook grades withheld.

The graded units of a notebook are the functions and classes its instructor's answer
cells define, in the module their export marker (``#| export pkg.module``, in a release
the cell metadata it became) names. For
each graded notebook the grader writes a copy of the package (:func:`overlay`) in which
those units are stubs and their source text is gone; the sandbox shows that copy where
the package lives. A stub called from the learner's code raises a "write it yourself"
error, so importing, wrapping or copying the reference cannot earn points. The
instructor's tests still need the reference: a stub asks for it with an audit event
(``grader.withheld``) that only the sandbox's runner answers, and only when no learner
code is on the call stack (see ``runner.py``). The runner builds that reference from the
original module sources, which travel in the job (:attr:`Overlay.references`), never
through the file system the notebook sees.

Only the standard library; no course code is imported.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import assemble

HELPER = "_withheld"

# Written as <package>/_withheld.py into every overlay.
HELPER_SOURCE = '''"""Written by the grader into the copy of the package that a graded notebook sees.

What the notebook being graded asks you to write is withheld in this copy: calling it
from your code raises. The instructor's tests reach the reference through the grader.
"""
import sys

MESSAGE = ("{} is what this notebook grades: write it yourself (the course's reference "
           "is withheld while the notebook is graded)")


def lookup(key):
    """The reference for ``key``, when the grader gives it to this caller; else None."""
    box = []
    sys.audit("grader.withheld", key, box)
    return box[0] if box else None


def error(name):
    return NotImplementedError(MESSAGE.format(name))


class Withheld(type):
    """The type of a withheld class: building or asking it goes to the reference."""

    def __call__(cls, *args, **kwargs):
        real = lookup(cls)
        if real is None:
            raise error(cls.__name__)
        return real(*args, **kwargs)

    def __instancecheck__(cls, obj):
        real = lookup(cls)
        return isinstance(obj, real) if real is not None else type.__instancecheck__(cls, obj)

    def __subclasscheck__(cls, sub):
        real = lookup(cls)
        return issubclass(sub, real) if real is not None else type.__subclasscheck__(cls, sub)

    def __getattr__(cls, key):
        real = None if key.startswith("__") else lookup(cls)
        if real is None:
            raise AttributeError(f"{cls.__name__}.{key}: " + MESSAGE.format(cls.__name__))
        return getattr(real, key)
'''

FUNCTION_STUB = '''def {name}(*args, **kwargs):
    """Withheld while this notebook is graded: write ``{name}`` yourself."""
    real = _grader_withheld.lookup(({module!r}, {name!r}))
    if real is None:
        raise _grader_withheld.error({name!r})
    return real(*args, **kwargs)'''

CLASS_STUB = '''class {name}(metaclass=_grader_withheld.Withheld):
    """Withheld while this notebook is graded: write ``{name}`` yourself."""'''


def graded_units(instructor: dict) -> dict[str, list[str]]:
    """``{module: [names]}``: what the notebook's answer cells define, by export target.

    A release's cell names them (``metadata.tinygpt.defines``, from the instructor's cell),
    so that a release graded as its own instructor copy, in a student repository,
    withholds the package's units and not the helpers a learner adds."""
    units: dict[str, list[str]] = {}
    for cell in instructor["cells"]:
        meta = assemble.nbgrader_meta(cell)
        module = assemble.export_target(cell)
        if cell["cell_type"] != "code" or not meta.get("solution") or module is None:
            continue
        named = (cell.get("metadata") or {}).get("tinygpt", {}).get("defines")
        if isinstance(named, list) and all(isinstance(n, str) for n in named):
            names = named
        else:
            try:
                names = assemble.top_level_names(assemble.source(cell))
            except SyntaxError:
                continue
        if names and module.replace(".", "").isidentifier():
            units.setdefault(module, []).extend(names)
    return units


def module_file(root: Path, module: str) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def stubbed(source: str, module: str, names: list[str]) -> str:
    """``source`` with each top-level def or class in ``names`` replaced by its stub."""
    lines = source.splitlines()
    spans, found = [], set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in names:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            template = CLASS_STUB if isinstance(node, ast.ClassDef) else FUNCTION_STUB
            spans.append((start - 1, node.end_lineno, template.format(name=node.name, module=module)))
            found.add(node.name)
    missing = set(names) - found
    if missing:
        raise ValueError(f"{module} defines no top-level {', '.join(sorted(missing))}")
    package = module.split(".")[0]
    for i, (start, end, text) in enumerate(sorted(spans, reverse=True)):
        if i == len(spans) - 1:
            text = f"import {package}.{HELPER} as _grader_withheld\n\n\n" + text
        lines[start:end] = text.splitlines()
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Overlay:
    package: str                     # top-level package name ("tinygpt")
    original: Path                   # COURSE/<package>: where the sandbox shows the copy
    path: Path                       # the copy, COPY/<package>
    references: dict[str, str]       # module -> original source, for the runner
    withheld: list[list[str]]        # [module, name, "function"|"class"]

    def job(self) -> dict:
        """What the runner needs to answer for the withheld units."""
        return {"package": self.package, "path": str(self.original), "copy": str(self.path),
                "references": self.references, "units": self.withheld}


@dataclass
class Overlays:
    """One copy per distinct set of graded units, made once per grading run."""

    folder: Path
    _made: dict[str, Overlay] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def for_notebook(self, root: Path, instructor: dict, data: tuple[str, ...] = ()) -> Overlay | None:
        """The copy for this notebook's graded units (None: it grades none) of the package
        in ``root``. The ``data`` folders of ``root`` are linked beside the copy, where the
        package looks for them."""
        units = graded_units(instructor)
        if not units:
            return None
        packages = {m.split(".")[0] for m in units}
        if len(packages) != 1:
            raise ValueError(f"a notebook exports into several packages: {sorted(packages)}")
        package = packages.pop()
        key = hashlib.sha256(json.dumps([str(root), sorted(units.items())]).encode()).hexdigest()[:16]
        with self._lock:
            if key not in self._made:
                self._made[key] = self._make(root, package, units, self.folder / key)
                for name in data:
                    if (root / name).is_dir():
                        (self.folder / key / name).symlink_to(root / name)
            return self._made[key]

    @staticmethod
    def _make(root: Path, package: str, units: dict[str, list[str]], where: Path) -> Overlay:
        original = root / package
        copy = where / package
        shutil.copytree(original, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        references, withheld = {}, []
        for module, names in units.items():
            source = module_file(root, module).read_text(encoding="utf-8")
            references[module] = source
            module_file(where, module).write_text(stubbed(source, module, names), encoding="utf-8")
            kinds = {n.name: "class" if isinstance(n, ast.ClassDef) else "function"
                     for n in ast.parse(source).body if hasattr(n, "name")}
            withheld += [[module, name, kinds[name]] for name in names]
        (copy / f"{HELPER}.py").write_text(HELPER_SOURCE, encoding="utf-8")
        for path in [where, *where.rglob("*")]:  # readable by the sandbox's own uid
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        return Overlay(package, original, copy, references, withheld)
