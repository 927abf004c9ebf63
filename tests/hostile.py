"""Hostile submissions built from the course's own notebooks, for the sandboxed grader's tests.

Every builder takes a :class:`Notebook` (the release, the solution's answers) and
returns an :class:`Attack`: the files of one submitted notebook folder and what the
grader must make of it (status, and whether the score is full marks or 0). Attacks
start from the stubs (the release) unless they are meant to show that honest answers
keep their marks, so a grader fooled by an attack shows up as points where 0 is due.
Everything is bounded: at most 3 GiB allocated, 2 GiB printed, 200 processes forked.
"""
from __future__ import annotations

import ast
import copy
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

MARKER = "hostile-marker-7f3a"  # every file an attack tries to leave behind carries this name


@dataclass
class Notebook:
    assignment: str
    name: str                 # file name, 01_x.ipynb
    release: dict
    solution: dict

    @property
    def answers(self) -> dict[str, str]:
        return {meta(c)["grade_id"]: src(c) for c in self.solution["cells"] if meta(c).get("solution")}

    def submission(self, answers: dict[str, str] | None = None) -> dict:
        nb = copy.deepcopy(self.release)
        for cell in nb["cells"]:
            if meta(cell).get("solution") and answers and meta(cell)["grade_id"] in answers:
                cell["source"] = answers[meta(cell)["grade_id"]]
        return nb

    def check_imports(self) -> list[tuple[str, str]]:
        """(module, name) for every ``from M import name`` in the release's setup cells."""
        found = []
        for cell in self.release["cells"]:
            m = meta(cell)
            if cell["cell_type"] != "code" or m.get("solution") or m.get("grade"):
                continue
            for node in ast.walk(ast.parse(src(cell))):
                if isinstance(node, ast.ImportFrom) and node.module:
                    found += [(node.module, a.asname or a.name) for a in node.names]
        return found


@dataclass
class Attack:
    name: str
    status: str
    full_marks: bool          # True: full marks expected; False: 0 expected
    files: dict[str, bytes] = field(default_factory=dict)   # name -> content (notebook included)


def meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def src(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _dump(nb) -> bytes:
    return json.dumps(nb).encode()


def with_prelude(nb: Notebook, code: str, honest: bool = False) -> dict:
    """Stubs (or honest answers); the first answer cell starts with ``code``."""
    sub = nb.submission(nb.answers if honest else None)
    first = next(c for c in sub["cells"] if meta(c).get("solution"))
    first["source"] = code + "\n" + src(first)
    return sub


def _after_first_answer(nb: Notebook, code: str) -> dict:
    """Honest answers; the first answer cell ends with ``code``."""
    sub = nb.submission(nb.answers)
    first = next(c for c in sub["cells"] if meta(c).get("solution"))
    first["source"] = src(first) + "\n" + code
    return sub


def _every_answer(nb: Notebook, code: str) -> dict:
    """Each answer cell ends with ``code`` (run after the stubs' definitions)."""
    sub = nb.submission()
    for cell in sub["cells"]:
        if meta(cell).get("solution"):
            cell["source"] = src(cell) + "\n" + code
    return sub


def _graded_names(nb: Notebook) -> list[str]:
    names = []
    for text in nb.answers.values():
        tree = ast.parse(text)
        names += [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    return names


def patched_checks(nb: Notebook) -> str:
    lines = ["import sys as _s, importlib as _il"]
    for module, name in nb.check_imports():
        lines.append(f"try:\n    _il.import_module({module!r}).{name} = lambda *a, **k: None\n"
                     f"except Exception:\n    pass\n{name} = lambda *a, **k: None")
    return "\n".join(lines)


PATCHED_TORCH = """
import torch, torch.testing
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
"""
PATCHED_BUILTINS = """
import builtins
_real_import = builtins.__import__
def _fake_import(name, *args, **kwargs):
    module = _real_import(name, *args, **kwargs)
    if name.startswith("tinygpt.checks"):
        for key in dir(module):
            if key.startswith("check") or key == "written_here":
                setattr(module, key, lambda *a, **k: None)
    return module
builtins.__import__ = _fake_import
builtins.AssertionError = type("AssertionError", (Exception,), {})
builtins.isinstance = lambda *a: True
"""
IPYTHON = """
try:
    get_ipython().input_transformers_cleanup.append(lambda lines: ["pass\\n"])
except NameError:
    import IPython
    IPython.get_ipython().ast_transformers.append(None)
"""
SETTRACE = """
import sys
def _strip(frame, event, arg):
    if event == "exception":
        frame.f_trace_lines = False
    return _strip
sys.settrace(_strip)
"""
CTYPES = """
import ctypes
_setattr = ctypes.pythonapi.PyObject_SetAttrString  # would write past every audited setattr
"""
SIGNALS = """
import signal
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGXCPU):
    signal.signal(_sig, signal.SIG_IGN)
signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(SystemExit(0)))
signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)
"""
FUNCTIONS_EXIT = """
import os as _os
for _name in {names!r}:
    globals()[_name] = lambda *a, **k: _os._exit(0)
"""
FUNCTIONS_SYSTEMEXIT = """
for _name in {names!r}:
    globals()[_name] = lambda *a, **k: (_ for _ in ()).throw(SystemExit(0))
"""
FORK_STORM = """
import os as _os, time as _time
def _storm(*a, **k):
    for _ in range(200):
        if _os.fork() == 0:
            _time.sleep(600)
            _os._exit(0)
for _name in {names!r}:
    globals()[_name] = _storm
"""
MEMORY_HOG = """
_hog = []
for _ in range(30):
    _hog.append(bytearray(100 * 2**20))   # at most 3 GiB, touched page by page
"""
PRINT_GIGABYTES = """
import sys
_line = "x" * 2**20
for _ in range(2048):                   # at most 2 GiB
    sys.stdout.write(_line)
"""
SOCKETS = """
import socket
socket.create_connection(("1.1.1.1", 53), timeout=2).close()
"""
READ_SOLUTIONS = """
import json, pathlib
_nb = json.loads(pathlib.Path({solution!r}).read_text())
for _cell in _nb["cells"]:
    if _cell["metadata"].get("nbgrader", {{}}).get("solution"):
        exec("".join(_cell["source"]), globals())
"""
READ_GRADEBOOK = """
_data = open({gradebook!r}, "rb").read()   # holds the hidden tests
raise SystemExit("read the gradebook: " + str(len(_data)))
"""
WRITE_OUTSIDE = """
import pathlib
for _target in {targets!r}:
    try:
        pathlib.Path(_target).write_text("tampered")
    except OSError:
        pass
"""
STARTUP_FILES = """
import os, pathlib, site, sys
_evil = "import builtins; builtins.AssertionError = KeyError\\n"
for _target in [pathlib.Path.home() / ".ipython/profile_default/startup/00-{marker}.py",
                pathlib.Path.home() / ".jupyter/nbgrader_config.py",
                pathlib.Path("/tmp/{marker}/sitecustomize.py"),
                pathlib.Path(os.getcwd()) / "sitecustomize.py",
                pathlib.Path(os.getcwd()) / "usercustomize.py"]:
    try:
        _target.parent.mkdir(parents=True, exist_ok=True)
        _target.write_text(_evil)
    except OSError:
        pass
"""
WARN = """
import sys, warnings
warnings.warn("a correct answer may warn")
print("and may write to stderr", file=sys.stderr)
"""
INFINITE_LOOP = "while True:\n    pass\n"
SLEEP = "import time\ntime.sleep(10**6)\n"
CODE_SWAP = """
import tinygpt.checks.common as _c
_c.written_here.__code__ = (lambda obj: None).__code__
"""
TENSOR_EQ = """
import torch
torch.Tensor.__eq__ = lambda a, b: True
torch.Tensor.__bool__ = lambda a: True
"""
FUNCTION_MODE = """
import torch
from torch.overrides import TorchFunctionMode
class _Always(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal):
            return True
        return func(*args, **(kwargs or {}))
_Always().__enter__()
"""
FORGED_VERDICTS = """
import os
for _fd in range(3, 64):
    for _gid in {tests!r}:
        try:
            os.write(_fd, repr(("test", "0" * 32, _gid, True, "")).encode() + b"\\n")
        except OSError:
            pass
"""
FAKE_MODULES = """
import sys, types
for _name in [m for m in list(sys.modules) if m.startswith("tinygpt.checks")]:
    _fake = types.ModuleType(_name)
    _fake.__getattr__ = lambda key: (lambda *a, **k: None)
    sys.modules[_name] = _fake
"""


# The graded reference, reached without a plain ``from M import f`` (issue 14): each spelling
# scored full marks while the package held the reference. ``{f}`` a graded function, ``{m}``
# the module its answer cell exports into.
REFERENCE_SPELLINGS = {
    "import_module wrapper": "import importlib\ndef {f}(*a, **k):\n"
                             "    return importlib.import_module({m!r}).{f}(*a, **k)\n",
    "sys.modules wrapper": "import sys, {m}\ndef {f}(*a, **k):\n    return sys.modules[{m!r}].{f}(*a, **k)\n",
    "__import__ wrapper": "def {f}(*a, **k):\n    return getattr(__import__({m!r}, fromlist=['_']), {f!r})(*a, **k)\n",
    "FunctionType of its code": "import types, {m} as _r\n"
                                "{f} = types.FunctionType(_r.{f}.__code__, globals(), {f!r}, _r.{f}.__defaults__)\n",
    "FunctionType, its globals, __module__": "import types, {m} as _r\n"
        "{f} = types.FunctionType(_r.{f}.__code__, _r.{f}.__globals__, {f!r}, _r.{f}.__defaults__)\n"
        "{f}.__module__ = '__main__'\n",
    "imported, __module__ set": "from {m} import {f}\n{f}.__module__ = '__main__'\n",
    "exec of its source": "import inspect, {m} as _r\nexec(inspect.getsource(_r.{f}))\n",
    "wrapper compiled as a library file": "import sys\n"
        "exec(compile({wrapper!r}, sys.prefix + '/lib/{f}.py', 'exec'))\n",
}
SPELLING_STATUS = {"wrapper compiled as a library file": "tampered"}

# Looks for another copy of the course anywhere it can see, and runs its solution (issue 27).
SEARCH_DISK = """
import json, os
for _top, _dirs, _files in os.walk("/", onerror=lambda e: None):
    _dirs[:] = [d for d in _dirs if os.path.join(_top, d) not in ("/proc", "/sys", "/dev", "/usr")
                and d not in ("site-packages", "node_modules", ".git")]
    if _top.endswith({tail!r}) and {name!r} in _files:
        try:
            _cells = json.load(open(os.path.join(_top, {name!r})))["cells"]
        except OSError:
            continue
        for _cell in _cells:
            if _cell["metadata"].get("nbgrader", {{}}).get("solution"):
                exec("".join(_cell["source"]), globals())
        break
"""
# Honest answers that fail unless every one of these paths is absent from the notebook's view.
PROBE_PATHS = """
import os
_seen = [p for p in {paths!r} if os.path.lexists(p)]
assert not _seen, f"visible inside the sandbox: {{_seen}}"
"""


def reference_answers(nb: Notebook, template: str) -> dict:
    """Stubs whose answer cells each take the reference of what they define, by ``template``."""
    sub = nb.submission()
    exports = {meta(c)["grade_id"]: src(c).split("\n", 1)[0].removeprefix("#| export ").strip()
               for c in nb.solution["cells"] if meta(c).get("solution")}
    for cell in sub["cells"]:
        gid = meta(cell).get("grade_id")
        if meta(cell).get("solution") and gid in nb.answers:
            names = [n.name for n in ast.parse(nb.answers[gid]).body if isinstance(n, ast.FunctionDef)]
            wrappers = [REFERENCE_SPELLINGS["import_module wrapper"].format(f=f, m=exports[gid]) for f in names]
            cell["source"] = "".join(template.format(f=f, m=exports[gid], wrapper=w)
                                     for f, w in zip(names, wrappers)) or src(cell)
    return sub


def view_attacks(nb: Notebook, course: Path, elsewhere: Path) -> list[Attack]:
    """A second copy of the course at ``elsewhere`` (outside the course and /tmp), searched
    for; and the paths a notebook must not see, probed (the sandbox's allowlist root)."""
    home = Path.home()
    interpreter = Path(os.path.realpath(sys.executable))
    homes = [p for p in home.iterdir() if p not in interpreter.parents and p not in course.parents
             and p != course] if home.is_dir() and os.access(home, os.R_OK) else []
    paths = [str(elsewhere), str(elsewhere / "solutions"), "/srv", "/opt", "/home", *map(str, homes[:20]),
             str(course / "solutions"), str(course / ".git"), str(course / "autograder"),
             str(course / "exercises"), str(course / "README.md")]
    tail = f"/solutions/{nb.assignment}"
    return [
        Attack("search the disk for another copy", "ok", False,
               {nb.name: _dump(_every_answer(nb, SEARCH_DISK.format(tail=tail, name=nb.name)))}),
        Attack("probe paths outside the view, honest", "ok", True,
               {nb.name: _dump(with_prelude(nb, PROBE_PATHS.format(paths=paths), honest=True))}),
    ]


def _warn_in_functions(nb: Notebook) -> dict:
    """Honest answers whose graded functions each warn and write to stderr when called."""
    sub = nb.submission(nb.answers)
    for cell in sub["cells"]:
        if meta(cell).get("solution"):
            tree = ast.parse(src(cell))
            for node in tree.body:
                if isinstance(node, ast.FunctionDef):
                    node.body[:0] = ast.parse("import sys, warnings\nwarnings.warn('slow path', "
                                              "RuntimeWarning)\nsys.stderr.write('note\\n')").body
            cell["source"] = ast.unparse(tree)
    return sub


def _tests_of(nb: Notebook) -> list[str]:
    return [meta(c)["grade_id"] for c in nb.release["cells"] if meta(c).get("grade")]


def _edit_tests(nb: Notebook, honest: bool, how: str) -> dict:
    sub = nb.submission(nb.answers if honest else None)
    cells = []
    for cell in sub["cells"]:
        if not meta(cell).get("grade") or how == "reorder":
            cells.append(cell)
        elif how == "delete":
            continue
        elif how == "edit":
            cells.append({**cell, "source": "pass\n"})
        elif how == "duplicate":
            cells += [cell, copy.deepcopy(cell)]
        elif how == "markdown":
            cells.append({**{k: v for k, v in cell.items() if k not in ("outputs", "execution_count")},
                          "cell_type": "markdown"})
        elif how == "fake_outputs":
            cells.append({**cell, "execution_count": 1, "outputs": [
                {"output_type": "stream", "name": "stdout", "text": "all tests passed\n"}]})
        elif how == "points":
            cells.append({**cell, "metadata": {**cell["metadata"], "nbgrader": {
                **meta(cell), "points": 100}}})
    sub["cells"] = cells
    if how == "reorder":
        sub["cells"] = sub["cells"][:2] + sub["cells"][2:][::-1]
    return sub


def full_set(nb: Notebook, course: Path, submitted: Path, out: Path) -> list[Attack]:
    """Every attack, on one notebook."""
    names, tests = _graded_names(nb), _tests_of(nb)
    solution = course / "solutions" / nb.assignment / nb.name
    targets = [str(submitted / "honest" / nb.assignment / f"{MARKER}.ipynb"),
               str(submitted / "honest" / nb.assignment / nb.name),
               str(out / "grades.csv"), str(out / MARKER), str(course / MARKER),
               str(course / "solutions" / MARKER)]
    n = lambda sub: {nb.name: _dump(sub)}  # noqa: E731 - one notebook file
    big = nb.submission()
    big["cells"][0]["source"] = "x" * (100 * 2**20)
    return [
        Attack("patched checks", "tampered", False, n(_every_answer(nb, patched_checks(nb)))),
        Attack("patched torch.allclose", "ok", False, n(_every_answer(nb, PATCHED_TORCH))),
        Attack("patched builtins", "tampered", False, n(with_prelude(nb, PATCHED_BUILTINS))),
        Attack("IPython transformers", "ok", False, n(with_prelude(nb, IPYTHON))),
        Attack("settrace", "tampered", False, n(with_prelude(nb, SETTRACE))),
        Attack("ctypes from a cell", "tampered", False, n(with_prelude(nb, CTYPES))),
        Attack("signal handlers", "ok", False, n(with_prelude(nb, SIGNALS))),
        Attack("SystemExit", "ok", False, n(_every_answer(nb, FUNCTIONS_SYSTEMEXIT.format(names=names)))),
        Attack("os._exit in tests", "ok", False, n(_every_answer(nb, FUNCTIONS_EXIT.format(names=names)))),
        Attack("os._exit in an answer, honest", "ok", True,
               n(_after_first_answer(nb, "import os\nos._exit(0)"))),
        Attack("fork in an answer", "ok", False, n(with_prelude(nb, "import os\nos.fork()"))),
        Attack("fork storm in tests", "ok", False, n(_every_answer(nb, FORK_STORM.format(names=names)))),
        Attack("memory hog", "memory", False, n(with_prelude(nb, MEMORY_HOG))),
        Attack("print gigabytes, honest", "output", True, n(_after_first_answer(nb, PRINT_GIGABYTES))),
        Attack("warnings and stderr in answers, honest", "ok", True, n(_after_first_answer(nb, WARN))),
        Attack("warnings in the graded functions, honest", "ok", True, n(_warn_in_functions(nb))),
        Attack("socket", "ok", False, n(with_prelude(nb, SOCKETS))),
        Attack("read solutions", "ok", False, n(with_prelude(nb, READ_SOLUTIONS.format(solution=str(solution))))),
        Attack("read gradebook", "ok", False, n(with_prelude(nb, READ_GRADEBOOK.format(
            gradebook=str(course / "autograder" / "gradebook.db"))))),
        Attack("write outside", "ok", False, n(with_prelude(nb, WRITE_OUTSIDE.format(targets=targets)))),
        Attack("startup files", "ok", False, n(with_prelude(nb, STARTUP_FILES.format(marker=MARKER)))),
        Attack("infinite loop", "timeout", False, n(with_prelude(nb, INFINITE_LOOP))),
        Attack("sleep past the limit", "timeout", False, n(with_prelude(nb, SLEEP))),
        Attack("__code__ swap", "tampered", False, n(with_prelude(nb, CODE_SWAP))),
        Attack("Tensor.__eq__", "ok", False, n(with_prelude(nb, TENSOR_EQ))),
        Attack("torch function mode", "ok", False, n(_every_answer(nb, FUNCTION_MODE))),
        Attack("forged verdicts", "ok", False, n(with_prelude(nb, FORGED_VERDICTS.format(tests=tests)))),
        Attack("fake sys.modules", "tampered", False, n(_every_answer(nb, FAKE_MODULES))),
        Attack("100 MB notebook", "invalid", False, {nb.name: _dump(big)}),
        Attack("invalid JSON", "invalid", False, {nb.name: b'{"cells": [oops'}),
        Attack("JSON, not a notebook", "invalid", False, {nb.name: b'{"hello": [1, 2, 3]}'}),
        Attack("test cells to markdown, honest", "tampered", True, n(_edit_tests(nb, True, "markdown"))),
        Attack("test cells deleted, honest", "tampered", True, n(_edit_tests(nb, True, "delete"))),
        Attack("test cells edited", "tampered", False, n(_edit_tests(nb, False, "edit"))),
        Attack("test cells duplicated, honest", "tampered", True, n(_edit_tests(nb, True, "duplicate"))),
        Attack("fake outputs", "ok", False, n(_edit_tests(nb, False, "fake_outputs"))),
        Attack("raised points", "tampered", False, n(_edit_tests(nb, False, "points"))),
        Attack("cells re-ordered, honest", "ok", True, n(_edit_tests(nb, True, "reorder"))),
        *[Attack(f"reference: {name}", SPELLING_STATUS.get(name, "ok"), False, n(reference_answers(nb, t)))
          for name, t in REFERENCE_SPELLINGS.items()],
    ]


def few(nb: Notebook) -> list[Attack]:
    """Honest control, stubs and a few attacks, for every notebook of the course."""
    shadow = b"allclose = lambda *a, **k: True\nraise SystemExit('shadow torch imported')\n"
    combined = "\n".join([patched_checks(nb), PATCHED_TORCH, "import builtins\nbuiltins.isinstance = lambda *a: True"])
    return [
        Attack("honest", "ok", True, {nb.name: _dump(nb.submission(nb.answers))}),
        Attack("stubs", "ok", False, {nb.name: _dump(nb.release)}),
        Attack("patched checks, torch and builtins", "tampered", False, {nb.name: _dump(_every_answer(nb, combined))}),
        Attack("tests deleted + torch.py shadow + fake outputs, honest", "tampered", True,
               {nb.name: _dump(_edit_tests(nb, True, "delete")), "torch.py": shadow,
                "sitecustomize.py": shadow}),
    ]
