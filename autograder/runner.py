"""The process that runs one assembled notebook inside the sandbox: no Jupyter, no course code.

``sandbox.py`` starts it as ``python -I -c <this source>``; the job arrives on stdin as
JSON (``nonce``, ``cells``: ``{"kind": "setup"|"answer"|"test", "id", "source",
"defines"}``,
``hidden``: path prefixes never to open) and every event leaves on the pipe ``fd`` as one line,
``repr((kind, nonce, ...))``, written with functions saved before any student code ran:

* ``("test", nonce, grade_id, passed, message)``  one verdict per test cell;
* ``("cell", nonce, grade_id, message)``          an error in a setup or answer cell;
* ``("flag", nonce, what, detail)``               ``tamper``, ``memory`` or ``output``;
* ``("said", nonce, grade_id, text)``             what the learner's code warned or wrote
  to stderr in an answer or test cell: feedback, never a failed test;
* ``("end", nonce)``                              the notebook ran to its end.

Setup and answer cells run with ``exec`` in one namespace named ``__main__`` (no course
notebook uses magics). Each test cell runs in a forked child that first puts back the
trusted state captured before the first answer cell (module and class dicts, function
code, ``sys`` hooks and import machinery, signal handlers, torch's global modes, the
names the setup cells bound), gets fresh stdout/stderr, and runs the test with the saved
``compile``/``exec``. It passes when it raises nothing and writes nothing to stderr, as
in nbgrader. The child then carries on as the notebook's main line (so names a test cell
binds reach later cells, as in a kernel); if it dies before saying so, its parent fails
that test and carries on itself. An audit hook (which nothing can remove) denies ctypes (but loading a library,
which ``import torch`` does, and a library's import looking a symbol up, as dill's does),
tracing, new audit hooks, ``gc`` introspection, changes to trusted classes and functions
and opening hidden paths throughout, and in answer cells also processes, signals and
sockets; ``os._exit`` there raises instead.
"""
import ast
import builtins
import importlib
import io
import json
import os
import select
import signal
import sys
import types
import warnings

# The runner's own functions look builtins up here, not in the (patchable) builtins module.
__builtins__ = dict(vars(builtins))

_write, _read, _close, _pipe, _fork, _waitpid = os.write, os.read, os.close, os.pipe, os.fork, os.waitpid
_exit, _dup2, _memfd, _lseek, _select = os._exit, os.dup2, os.memfd_create, os.lseek, select.select
_compile, _exec, _repr, _isinstance, _type, _id = compile, exec, repr, isinstance, type, id
_getsignal, _signal, _settrace, _setprofile = signal.getsignal, signal.signal, sys.settrace, sys.setprofile
_TextIOWrapper, _FileIO, _FunctionType = io.TextIOWrapper, io.FileIO, types.FunctionType
_type_dict = type.__dict__["__dict__"].__get__
_type_mro = type.__dict__["__mro__"].__get__
_getframe, _import_module = sys._getframe, importlib.import_module
_MISSING = object()
_BEHAVIOUR = (types.FunctionType, types.BuiltinFunctionType, types.MethodDescriptorType,
              types.WrapperDescriptorType, property, staticmethod, classmethod)

_DENIED = frozenset({"sys.settrace", "sys.setprofile", "sys.addaudithook", "sys._current_frames",
                     "gc.get_objects", "gc.get_referrers", "gc.get_referents", "os.exec",
                     "os.posix_spawn", "os.spawn", "os.system", "subprocess.Popen",
                     "os.forkpty", "pty.spawn"})
_DENIED_IN_ANSWERS = frozenset({"os.fork", "os.kill", "os.killpg", "signal.pthread_kill"})
_state = {"phase": "trusted", "nonce": "", "trusted": frozenset(), "hidden": (), "fd": -1,
          "signals": {}, "ns": {}, "known": set(), "keep": [], "roots": ("<frozen ",),
          "lookup": None, "entries": {}, "classes": {}, "stubs": {}, "reference": {}, "setup": {},
          "package": "",
          "said": []}


def _emit(*fields) -> None:
    line = _repr((fields[0], _state["nonce"], *fields[1:]))
    try:
        _write(_state["fd"], (line[:3000] + "\n").encode("utf-8", "backslashreplace"))
    except OSError:
        pass


def _audit(event: str, args: tuple) -> None:
    if event == "grader.withheld":
        _answer_withheld(args)
        return
    phase = _state["phase"]
    if phase == "trusted":
        return
    if event == "ctypes.dlsym" and _library_module_body(_getframe(1)):
        return
    if event in _DENIED or (event.startswith("ctypes.") and event != "ctypes.dlopen"):
        _emit("flag", "tamper", event)
        raise PermissionError(f"{event} is not allowed while grading")
    if phase == "answer" and (event in _DENIED_IN_ANSWERS or event.startswith("socket.")):
        raise PermissionError(f"{event} is not allowed while grading")
    if event in ("object.__setattr__", "object.__delattr__") and _id(args[0]) in _state["trusted"]:
        _emit("flag", "tamper", f"{event} {args[1]!s:.80} of a grading tool")
        raise PermissionError(f"changing {args[1]!s:.80} of a grading tool is not allowed")
    if event == "open" and _type(args[0]) is str and args[0].startswith(_state["hidden"]):
        raise PermissionError(f"{args[0]} is not readable while grading")
    if event in ("compile", "code.__new__") and _forged(args[1], args[0] if event == "compile" else None):
        _emit("flag", "tamper", f"{event} as {args[1]!s:.80}")
        raise PermissionError("code may not pose as a library's or the grader's while grading")


def _library_module_body(frame) -> bool:
    """Whether a library module's top level, as it is imported, looks a symbol up (dill
    reads ``ctypes.pythonapi.PyCapsule_New`` when torch imports it). Looking up is allowed
    there; calling what it finds (``ctypes.call_function``) never is."""
    while frame is not None and frame.f_code.co_filename.endswith("/ctypes/__init__.py"):
        frame = frame.f_back
    return (frame is not None and frame.f_code.co_name == "<module>"
            and frame.f_code.co_filename.startswith(_state["roots"])
            and not frame.f_code.co_filename.startswith("<"))


def _forged(filename, source) -> bool:
    """Code made at run time that names a library file (or the grader's own) as its origin:
    it would pass for trusted code on the stack. Importing a module compiles exactly the
    file's bytes, which is allowed."""
    if _type(filename) is bytes:
        filename = filename.decode("utf-8", "replace")
    if _type(filename) is not str or not filename.startswith(_state["roots"] + ("<reference",)):
        return False
    if _type(source) is not bytes or filename.startswith("<"):
        return True
    try:
        with _FileIO(filename, "r") as f:
            return f.read() != source
    except OSError:
        return True


def _behaviour(value) -> bool:
    """A class attribute that decides how instances behave (not a lazily cached value)."""
    return issubclass(_type(value), _BEHAVIOUR)


def _from_notebook(value) -> bool:
    """Written in a cell (libraries also replace their own functions lazily: not tampering).

    Runs while the trusted state is put back, so it reads no attribute a student could define."""
    kind = _type(value)
    inner = value.__func__ if kind in (staticmethod, classmethod) else value.fget if kind is property else value
    if _type(inner) is _FunctionType and inner.__code__.co_filename.startswith("<cell "):
        return True
    cls = value if issubclass(kind, type) else kind
    return _type_dict(cls).get("__module__") == "__main__"


def _stub_exit(code=0):
    raise SystemExit(f"os._exit({code}) called in an answer cell")


def _enter_answers() -> None:
    os._exit = _stub_exit
    sys.modules["posix"]._exit = _stub_exit
    _state["phase"] = "answer"


# ------------------------------------------------------------------ withheld references

def _trust(code) -> None:
    """``code`` and the code nested in it are the instructor's (a setup or test cell, a reference)."""
    stack = [code]
    while stack:
        c = stack.pop()
        _state["known"].add(_id(c))
        _state["keep"].append(c)  # alive, so no other code object ever gets its id
        stack.extend(k for k in c.co_consts if _type(k) is types.CodeType)


def _learner_on_stack(frame) -> bool:
    """Whether code not written by the instructor or a library runs between ``frame`` and the cell."""
    roots = _state["roots"]
    while frame is not None:
        code = frame.f_code
        if code is _run_cell.__code__:
            return False
        if _id(code) not in _state["known"] and not code.co_filename.startswith(roots):
            return True
        frame = frame.f_back
    return True


def _asked_by_learner(frame) -> bool:
    """Whether the nearest caller above ``frame`` that is not a library's (the standard
    library's and site-packages' frames are passed through) is the learner's code.

    The course package's own code asking (chapter 3's ``MoE`` building the withheld
    ``SwiGLU``) and the instructor's cells are not; a call from another thread is."""
    package = _state["package"]
    while frame is not None:
        code = frame.f_code
        if code is _run_cell.__code__ or _id(code) in _state["known"]:
            return False
        name = code.co_filename
        if package and name.startswith(package):
            return False
        if not name.startswith(_state["roots"]):
            return True
        frame = frame.f_back
    return True


def _prepare_withheld(spec: dict) -> None:
    """Import the stubs the grader wrote, and build the references they stand for.

    The references are compiled from the original sources in the job (no file of them is
    visible), into modules that only this runner holds; names in them that point to a
    stub point to the reference instead."""
    helper = _import_module(spec["package"] + "._withheld")
    _state["lookup"] = (helper.lookup.__code__, helper.__dict__)
    for method in ("__call__", "__instancecheck__", "__subclasscheck__", "__getattr__"):
        _state["entries"][_id(helper.Withheld.__dict__[method].__code__)] = (helper.__dict__, None)
    stubs = {}
    for module, name, kind in spec["units"]:
        stub = _import_module(module).__dict__[name]
        unit = (module, name)
        stubs[_id(stub)] = unit
        _state["stubs"][unit] = stub
        if kind == "class":
            _state["classes"][_id(stub)] = unit
        else:
            _state["entries"][_id(stub.__code__)] = (stub.__globals__, unit)
    spaces = {}
    for module, source in spec["references"].items():
        code = _compile(source, f"<reference {module}>", "exec")
        _trust(code)
        spaces[module] = {"__name__": module, "__package__": module.rpartition(".")[0],
                          "__builtins__": builtins}
        _exec(code, spaces[module])
    for space in spaces.values():
        for key, value in list(space.items()):
            if _id(value) in stubs:
                module, name = stubs[_id(value)]
                space[key] = spaces[module][name]
    for module, name, _ in spec["units"]:
        _state["reference"][module, name] = spaces[module][name]


def _bound_to_stub(value) -> bool:
    """The notebook's name for a graded unit holds the stub itself (imported, or its code reused)."""
    if _id(value) in _state["classes"] or _id(value) in {_id(s) for s in _state["stubs"].values()}:
        return True
    if _type(value) is _FunctionType and _id(value.__code__) in _state["entries"]:
        return True
    return _isinstance(value, type) and any(_id(b) in _state["classes"] for b in _type_mro(value))


def _answer_withheld(args: tuple) -> None:
    """A stub asks for its reference: give it only to the instructor's code.

    The chain must be the genuine ``lookup``, called by a genuine stub (code and module),
    called by the instructor's code or the course package (:func:`_asked_by_learner`),
    and the notebook must not have bound the stub under the graded name, unless a setup
    cell did (an instructor's module header importing the reference for later cells)."""
    if len(args) != 2 or _type(args[1]) is not list or _state["lookup"] is None:
        return
    key, box = args
    asker = _getframe(2)
    code, space = _state["lookup"]
    if asker.f_code is not code or asker.f_globals is not space:
        return
    stub = asker.f_back
    entry = _state["entries"].get(_id(stub.f_code)) if stub is not None else None
    if entry is None or stub.f_globals is not entry[0]:
        return
    unit = _state["classes"].get(_id(key)) if entry[1] is None else entry[1] if key == entry[1] else None
    if unit is None:
        return
    if _state["phase"] != "trusted":
        bound, given = _state["ns"].get(unit[1]), _state["stubs"][unit]
        if not (bound is given and _state["setup"].get(unit[1]) is given) and (
                _bound_to_stub(bound) or _asked_by_learner(stub.f_back)):
            return
    box.append(_state["reference"][unit])


# ------------------------------------------------------------------ trusted state

def _capture(ns: dict, setup_names: dict) -> dict:
    """Everything a test relies on, as it is before any student code runs."""
    modules, classes, functions = {}, {}, []
    first = [(n, sys.modules[n]) for n in ("sys", "builtins")]  # put back before anything is read
    for name, mod in first + list(sys.modules.items()):
        d = getattr(mod, "__dict__", None)
        if d is ns or _type(d) is not dict:
            continue
        modules[name] = (mod, dict(d))
        for value in d.values():
            if issubclass(_type(value), type) and _id(value) not in classes:
                classes[_id(value)] = (value, dict(value.__dict__))
    spaces = [saved for _, saved in modules.values()] + [saved for _, saved in classes.values()]
    for space in spaces + [setup_names]:
        for value in space.values():
            if _type(value) is _FunctionType:
                functions.append((value, value.__code__, value.__defaults__, value.__kwdefaults__))
    snap = {"modules": modules, "classes": list(classes.values()), "functions": functions,
            "meta_path": list(sys.meta_path), "path": list(sys.path),
            "path_hooks": list(sys.path_hooks), "torch": None,
            "recursion": sys.getrecursionlimit()}
    torch = sys.modules.get("torch")
    if torch is not None:
        snap["torch"] = (torch.get_default_dtype(), torch.is_grad_enabled(),
                         torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    _state["trusted"] = frozenset([_id(c) for c, _ in snap["classes"]] + [_id(f[0]) for f in functions])
    return snap


def _restore(snap: dict, ns: dict, setup_names: dict) -> list:
    """Put the captured state back; return what had been replaced (tampering)."""
    changed = []
    for name, (mod, saved) in snap["modules"].items():
        if sys.modules.get(name) is not mod:
            sys.modules[name] = mod
            changed.append(f"sys.modules[{name!r}]")
        d = mod.__dict__
        for key, value in saved.items():
            now = d.get(key, _MISSING)
            if now is not value:
                d[key] = value
                if _from_notebook(now):
                    changed.append(f"{name}.{key}")
        for key in [k for k in d if k not in saved]:
            value = d[key]
            if not (_isinstance(value, types.ModuleType) and sys.modules.get(f"{name}.{key}") is value):
                del d[key]
    for cls, saved in snap["classes"]:
        d = cls.__dict__
        for key, value in saved.items():
            now = d.get(key, _MISSING)
            if now is not value and (_behaviour(value) or _behaviour(now)):
                try:
                    setattr(cls, key, value)
                    if _from_notebook(now):
                        changed.append(f"{cls.__qualname__}.{key}")
                except (TypeError, AttributeError):
                    pass
        for key in [k for k, v in d.items() if k not in saved and _behaviour(v)]:
            added = d[key]
            try:
                delattr(cls, key)
                if _from_notebook(added):
                    changed.append(f"{cls.__qualname__}.{key}")
            except (TypeError, AttributeError):
                pass
    for fn, code, defaults, kwdefaults in snap["functions"]:
        if fn.__code__ is not code or fn.__defaults__ is not defaults or fn.__kwdefaults__ is not kwdefaults:
            fn.__code__, fn.__defaults__, fn.__kwdefaults__ = code, defaults, kwdefaults
            changed.append(f"{fn.__qualname__}.__code__")
    sys.meta_path[:], sys.path[:], sys.path_hooks[:] = snap["meta_path"], snap["path"], snap["path_hooks"]
    sys.path_importer_cache.clear()
    sys.setrecursionlimit(snap["recursion"])
    _settrace(None)
    _setprofile(None)
    _quiet_signals()
    if snap["torch"] is not None:
        _restore_torch(sys.modules["torch"], *snap["torch"])
    for key, value in setup_names.items():
        if ns.get(key, _MISSING) is not value:
            ns[key] = value
    ns["__builtins__"], ns["__name__"] = builtins, "__main__"
    return changed


def _restore_torch(torch, dtype, grad, deterministic, threads) -> None:
    """torch's process-wide switches and override modes, as the tests expect them."""
    torch.set_default_dtype(dtype)
    torch.set_grad_enabled(grad)
    torch.use_deterministic_algorithms(deterministic)
    torch.set_num_threads(threads)
    C = torch._C
    while C._len_torch_function_stack() > 0:
        C._pop_torch_function_stack()
    while C._len_torch_dispatch_stack() > 0:
        C._pop_torch_dispatch_stack()


# ------------------------------------------------------------------ running cells

def _describe(err: BaseException, label: str | None = None) -> str:
    """``Type: first line``; with ``label``, the line of that cell it happened on."""
    try:
        if _isinstance(err, SyntaxError):
            return f"{type(err).__name__} on line {err.lineno}: {err.msg}"[:500]
        lines = [ln for ln in str(err).splitlines() if ln.strip()]
        text = f"{type(err).__name__}: {lines[0] if lines else ''}"
    except BaseException:  # noqa: BLE001 - a student's exception may break str()
        text = type(err).__name__
    lineno = _failed_line(err, {"id": label, "source": ""})[0] if label else None
    if lineno is not None:
        text = text.replace(":", f" on line {lineno}:", 1)
    return text[:500]


def _is_memory(err: BaseException) -> bool:
    if _isinstance(err, MemoryError):
        return True
    try:
        return _isinstance(err, RuntimeError) and "can't allocate memory" in str(err)
    except BaseException:  # noqa: BLE001
        return False


def _quiet_signals() -> None:
    """No timers, and the runner's own signal handlers: a student's cannot fire in its code."""
    for timer in (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF):
        signal.setitimer(timer, 0)
    for sig, handler in _state["signals"].items():
        try:
            _signal(sig, handler)
        except (OSError, ValueError, TypeError):
            pass


def _run_cell(source: str, label: str, ns: dict, instructor: bool = False,
              code=None) -> BaseException | None:
    err = None
    try:
        code = code or _compile(source, f"<cell {label}>", "exec")
        if instructor:
            _trust(code)
        _exec(code, ns)
    except BaseException as caught:  # noqa: BLE001 - SystemExit and KeyboardInterrupt included
        err = caught
    while True:
        try:
            _quiet_signals()
            break
        except BaseException:  # noqa: BLE001 - a student's handler fired before it was removed
            continue
    if err is not None and _is_memory(err):
        _emit("flag", "memory", label)
    if _isinstance(err, OSError) and getattr(err, "errno", None) == 27:
        _emit("flag", "output", label)
    return err


class _LearnerStream(io.TextIOBase):
    """``sys.stderr`` (and ``sys.stdout``, with ``tee``) while a cell runs: what the
    learner's code writes is kept for the feedback (shown, not scored); anything else, and
    with ``tee`` everything, goes on to ``stream``."""

    __module__ = "grader"  # not "__main__": the runner's own, never the notebook's

    def __init__(self, stream, tee: bool = False) -> None:
        self._stream, self._tee = stream, tee

    def writable(self) -> bool:
        return True

    def write(self, text) -> int:
        if _type(text) is not str:
            raise TypeError("write() argument must be str")
        learner = self._stream is None or _learner_on_stack(_getframe(1))
        if learner:
            _keep_said(text)
        if self._stream is not None and (self._tee or not learner):
            self._stream.write(text)
        return len(text)

    def flush(self) -> None:
        if self._stream is not None:
            self._stream.flush()


def _keep_said(text: str) -> None:
    said = _state["said"]
    if sum(len(t) for t in said) < 2000:
        said.append(text[:2000])


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings are feedback, never a failed test (stock nbgrader fails a test that warns)."""
    try:
        where = f"{filename}:{lineno}" if not str(filename).startswith("<") else str(filename)
        _keep_said(f"{category.__name__}: {message} ({where})\n")
    except BaseException:  # noqa: BLE001 - a student's warning may break str()
        _keep_said("a warning\n")


def _listen(stream, stdout) -> tuple:
    """Route warnings, the learner's stderr and (also) what it prints to the feedback for
    the next cell; returns the two streams put in place."""
    _state["said"] = []
    warnings.showwarning = _show_warning
    sys.stderr, sys.stdout = _LearnerStream(stream), _LearnerStream(stdout, tee=True)
    return sys.stderr, sys.stdout


def _emit_said(label: str) -> None:
    text = "".join(_state["said"]).strip()
    _state["said"] = []
    if text:
        _emit("said", label, text[:1000])


# ------------------------------------------------------------------ explaining a failed test

_OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
        ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}
_CLOSE = ("allclose", "equal", "isclose")


class _Explained(ast.NodeTransformer):
    """Rewrites a test cell's visible asserts, as pytest does, so that a failure says what
    was compared: ``assert a == b`` keeps both sides, ``assert torch.allclose(a, b)`` both
    tensors, ``assert p and q`` becomes two asserts. Lines in hidden tests stay as written
    (their operands would show hidden inputs)."""

    def __init__(self, hidden) -> None:
        self.hidden = frozenset(hidden)

    def visit_Assert(self, node):
        if node.lineno in self.hidden:
            return node
        test = node.test
        if _isinstance(test, ast.BoolOp) and _isinstance(test.op, ast.And):
            parts = [ast.copy_location(ast.Assert(v, node.msg), node) for v in test.values]
            done = [self.visit_Assert(part) for part in parts]
            return [n for d in done for n in (d if _isinstance(d, list) else [d])]
        if _isinstance(test, ast.Compare) and len(test.ops) == 1 and _type(test.ops[0]) in _OPS:
            op, sides = _OPS[_type(test.ops[0])], [test.left, test.comparators[0]]
            check = lambda a, b: ast.Compare(a, [test.ops[0]], [b])  # noqa: E731
        elif (_isinstance(test, ast.Call) and len(test.args) >= 2 and not any(
                _isinstance(a, ast.Starred) for a in test.args) and _isinstance(test.func, ast.Attribute)
              and test.func.attr in _CLOSE):
            op, sides = test.func.attr, test.args[:2]
            check = lambda a, b: ast.Call(test.func, [a, b, *test.args[2:]], test.keywords)  # noqa: E731
        else:
            return node
        name = lambda i: ast.Subscript(ast.Name("_grader_sides", ast.Load()), ast.Constant(i), ast.Load())  # noqa: E731
        explain = ast.Call(ast.Name("_grader_explain_", ast.Load()),
                           [ast.Constant(node.lineno), ast.Constant(op), name(0), name(1),
                            node.msg or ast.Constant(None)], [])
        body = [ast.Assign([ast.Name("_grader_sides", ast.Store())], ast.Tuple(sides, ast.Load())),
                ast.If(ast.UnaryOp(ast.Not(), check(name(0), name(1))),
                       [ast.Raise(ast.Call(ast.Name("AssertionError", ast.Load()), [explain], []), None)], [])]
        return [ast.fix_missing_locations(ast.copy_location(b, node)) for b in body]


def _short(text: str, limit: int = 160) -> str:
    text = text.replace("\n", "\\n") if len(text) < limit else text
    return text if len(text) <= limit else text[:limit - 20] + " ... " + text[-12:]


def _is_tensor(value) -> bool:
    return _type(value).__module__.startswith("torch") and hasattr(value, "shape") and hasattr(value, "dtype")


def _show(value) -> str:
    """A value, readable in one line: tensors as shape, dtype and a few values."""
    if _is_tensor(value):
        head = f"tensor of shape {tuple(value.shape)}, {value.dtype}"
        if value.numel() <= 8:
            head += f": {value.detach().cpu().flatten().tolist()}"
        return head
    return _short(_repr(value))


def _difference(left, right) -> str:
    """Where two values first differ (tensors: index, values, max abs difference)."""
    if _is_tensor(left) and _is_tensor(right):
        if tuple(left.shape) != tuple(right.shape):
            return f"shapes differ: {tuple(left.shape)} against {tuple(right.shape)}"
        a, b = left.detach().cpu().double(), right.detach().cpu().double()
        close = a.isclose(b, rtol=1e-5, atol=1e-8) | (a.isnan() & b.isnan())
        if bool(close.all()):
            return ""
        index = tuple(int(i) for i in (~close).nonzero()[0].tolist())
        return (f"first difference at index {index}: {a[index].item():.6g} against {b[index].item():.6g}; "
                f"max abs difference {(a - b).abs().nan_to_num(float('inf')).max().item():.3g}")
    if _isinstance(left, dict) and _isinstance(right, dict):
        missing = [k for k in right if k not in left][:3]
        extra = [k for k in left if k not in right][:3]
        wrong = [k for k in right if k in left and left[k] != right[k]][:3]
        said = [f"missing keys {_short(_repr(missing))}"] if missing else []
        said += [f"unexpected keys {_short(_repr(extra))}"] if extra else []
        said += [f"key {_short(_repr(k), 60)}: {_short(_repr(left[k]), 60)} against {_short(_repr(right[k]), 60)}"
                 for k in wrong[:1]]
        return "; ".join(said)
    if _type(left) is _type(right) and _isinstance(left, (list, tuple, str)):
        for i, (x, y) in enumerate(zip(left, right)):
            if x != y:
                return f"first difference at index {i}: {_short(_repr(x), 60)} against {_short(_repr(y), 60)}"
        if len(left) != len(right):
            return f"lengths differ: {len(left)} against {len(right)}"
    return ""


def _explain(lineno, op, left, right, msg) -> str:
    """The message of a failed rewritten assert: both sides, and where they differ."""
    try:
        lines = [] if msg is None else [_short(str(msg), 300)]
        if op in _CLOSE:
            lines += [f"torch.{op} is False", f"  got:      {_show(left)}", f"  expected: {_show(right)}"]
        else:
            said = "the two sides differ" if op == "==" else f"got {op} expected is False"
            lines += [said, f"  got:      {_show(left)}", f"  expected: {_show(right)}"]
        where = _difference(left, right) if op in _CLOSE + ("==",) else ""
        if where:
            lines.append(f"  {where}")
        return "\n".join(lines)
    except BaseException:  # noqa: BLE001 - a learner's value may break repr or comparison
        return "the values compared could not be shown"


def _failed_line(err: BaseException, cell: dict):
    """(line number, text or None if hidden) of the test cell's line that raised."""
    tb, found = err.__traceback__, None
    filename = f"<cell {cell['id']}>"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            found = tb.tb_lineno
        tb = tb.tb_next
    if found is None:
        return None, None
    if found in cell.get("hidden", ()):
        return found, None
    lines = cell["source"].splitlines()
    return found, (lines[found - 1].strip() if 0 < found <= len(lines) else None)


def _test_message(err: BaseException, cell: dict) -> str:
    """What a failed test says: the error (all its lines, bounded) and the line that raised."""
    try:
        text = str(err).strip()
    except BaseException:  # noqa: BLE001
        text = ""
    head = _type(err).__name__ + (f": {text}" if text else "")
    if len(head) > 1200:
        head = head[:1180] + " ..."
    lineno, line = _failed_line(err, cell)
    if lineno is None:
        return head
    where = f"in a hidden test (line {lineno})" if line is None else f"at line {lineno}: {_short(line, 120)}"
    return f"{head}\n  {where}"


def _compile_test(cell: dict):
    """The test cell's code with its visible asserts explained (as written if it cannot be)."""
    try:
        tree = _Explained(cell.get("hidden", ())).visit(ast.parse(cell["source"]))
        return _compile(ast.fix_missing_locations(tree), f"<cell {cell['id']}>", "exec")
    except (SyntaxError, ValueError, TypeError, RecursionError):
        return None



def _judge(cell: dict, ns: dict, snap: dict, setup_names: dict) -> None:
    """In a forked child: trusted state back, fresh streams, the test, its verdict."""
    _state["phase"] = "trusted"
    for what in _restore(snap, ns, setup_names)[:20]:
        _emit("flag", "tamper", f"{what} was replaced (put back for the test)")
    streams = []
    for target, name in ((1, "stdout"), (2, "stderr")):
        fd = _memfd(name)
        _dup2(fd, target)
        _close(fd)
        streams.append(_TextIOWrapper(_FileIO(target, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True))
    _listen(streams[1], streams[0])
    ns["_grader_explain_"] = _explain
    code = _compile_test(cell)
    _state["phase"] = "test"
    err = _run_cell(cell["source"], cell["id"], ns, instructor=True, code=code)
    message = _test_message(err, cell) if err is not None else ""  # a student's str(): still "test"
    _state["phase"] = "trusted"
    for stream in streams:
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    _lseek(2, 0, 0)
    written = _read(2, 400).decode("utf-8", "replace").strip()
    if written and not message:
        message = "wrote to stderr: " + written.splitlines()[0][:200]
    _emit_said(cell["id"])
    _emit("test", cell["id"], not message, message)


def _fork_test(cell: dict, ns: dict, snap: dict, setup_names: dict) -> None:
    """Returns in the child, which becomes the main line, and in the parent once its child
    has died without finishing the test; otherwise the parent waits and exits with it."""
    _state["phase"] = "trusted"
    r, w = _pipe()
    try:
        pid = _fork()
    except OSError as err:  # the process limit, reached by the student's own processes
        _close(r)
        _close(w)
        _emit("test", cell["id"], False, f"could not start the test's process: {err}"[:300])
        return
    if pid == 0:
        _close(r)
        _judge(cell, ns, snap, setup_names)
        _write(w, b"c")
        _close(w)
        return
    _close(w)
    while True:
        ready, _, _ = _select([r], [], [], 0.05)
        if ready and _read(r, 1) == b"c":
            _close(r)
            _, status = _waitpid(pid, 0)
            _exit(os.waitstatus_to_exitcode(status) if status else 0)
        done, status = _waitpid(pid, os.WNOHANG)
        if done or (ready and not _read(r, 1)):
            break
    _close(r)
    code = os.waitstatus_to_exitcode(status) if done else "?"
    _emit("test", cell["id"], False, f"the test's process ended before the test did (exit {code})")


def _die_with_parent() -> None:
    """SIGKILL when the process that started us dies (setpriv's uid change cleared unshare's)."""
    import ctypes
    ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


def main() -> None:
    _die_with_parent()
    job = json.loads(sys.stdin.buffer.read())
    _state.update(nonce=job["nonce"], hidden=tuple(job["hidden"]), fd=job["fd"])
    spec = job.get("withheld")
    if spec and spec.get("prepend"):  # mode none: the copy comes first on the path
        sys.path.insert(0, spec["prepend"])
    roots = [sys.prefix, sys.base_prefix, sys.exec_prefix] + ([spec["visible"]] if spec else [])
    _state["roots"] = tuple(r.rstrip("/") + "/" for r in roots) + ("<frozen ",)
    _state["package"] = spec["visible"].rstrip("/") + "/" if spec else ""
    for sig in signal.valid_signals():
        try:
            _state["signals"][sig] = _getsignal(sig)
        except (OSError, ValueError):
            pass
    sys.addaudithook(_audit)
    main_module = types.ModuleType("__main__")
    sys.modules["__main__"] = main_module
    ns, setup_names, snap = main_module.__dict__, {}, None
    ns["__builtins__"] = builtins
    _state["ns"], _state["setup"] = ns, setup_names
    if spec:
        try:
            _prepare_withheld(spec)
        except BaseException as err:  # noqa: BLE001 - reported, then the notebook runs on
            _emit("cell", "withheld references", _describe(err))
    job.pop("withheld", None)
    spec = None  # the references' sources live on only in the modules built from them
    for cell in job["cells"]:
        if cell["kind"] == "setup":
            before = dict(ns)
            err = _run_cell(cell["source"], cell["id"], ns, instructor=True)
            setup_names.update({k: v for k, v in ns.items() if before.get(k, _MISSING) is not v})
            if err is not None:
                _emit("cell", cell["id"], _describe(err))
            continue
        if snap is None:
            snap = _capture(ns, setup_names)
        if cell["kind"] == "answer":
            for name in cell["defines"]:  # the answer may rebind what a setup cell imported
                setup_names.pop(name, None)
            _enter_answers()
            before = (sys.stderr, sys.stdout)
            shown = _listen(None, sys.stdout)
            err = _run_cell(cell["source"], cell["id"], ns)
            if sys.stderr is shown[0] and sys.stdout is shown[1]:
                sys.stderr, sys.stdout = before
            _emit_said(cell["id"])
            if err is not None:
                _emit("cell", cell["id"], _describe(err, cell["id"]))
        else:
            _fork_test(cell, ns, snap, setup_names)
            _enter_answers()
    _emit("end")
    _exit(0)


if __name__ == "__main__":
    main()
