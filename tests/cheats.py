"""Build a cheating submission: answer cells that memorise what the visible tests ask.

``memorising_answers(solution_nb, release_nb)`` runs the release notebook in this
process with the solution's answers, records every call the *visible* test cells make
to each graded function (or to the methods of a graded class), and returns replacement
answer cells that replay those recorded answers and compute nothing. Such a submission
passes the visible tests (except where a test watches side effects, such as which
documents a pipeline step is called with) and must score 0 once the hidden tests run.

Calls are keyed by a fingerprint that is the same in every process (tensors by dtype,
shape and values, sets sorted, functions by name); answers travel pickled, named tuples
by type name so the notebook's own classes are rebuilt on replay.
"""
from __future__ import annotations

import base64
import contextlib
import inspect
import pickle
import tempfile
import types
from pathlib import Path

CLASS_METHODS = ("encode_ordinary", "decode", "encode")

# Shared by the recorder here and every cheat cell (exec'd in both places).
_SHARED = '''
import base64 as _b64, builtins as _bi, hashlib as _hl, pickle as _pk


def _cheat_fp(v):
    if hasattr(v, "tolist") and hasattr(v, "dtype"):
        return ("tensor", str(v.dtype), tuple(v.shape), v.tolist())
    if isinstance(v, (set, frozenset)):
        return ("set", sorted(repr(_cheat_fp(x)) for x in v))
    if isinstance(v, dict):
        return (type(v).__name__, sorted((repr(_cheat_fp(k)), _cheat_fp(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, [_cheat_fp(x) for x in v])
    if callable(v):
        return ("callable", getattr(v, "__qualname__", type(v).__name__))
    return repr(v)


def _cheat_key(args, kwargs):
    return _hl.sha256(repr((_cheat_fp(args), _cheat_fp(kwargs))).encode()).hexdigest()[:24]


def _cheat_pack(v):
    if isinstance(v, tuple) and hasattr(v, "_fields"):
        return ("__namedtuple__", type(v).__name__, [_cheat_pack(x) for x in v])
    if isinstance(v, (list, tuple)):
        return type(v)(_cheat_pack(x) for x in v)
    if isinstance(v, dict):
        return type(v)({k: _cheat_pack(x) for k, x in v.items()})
    return v


def _cheat_unpack(v, ns):
    if isinstance(v, tuple) and len(v) == 3 and v[0] == "__namedtuple__":
        return ns[v[1]](*[_cheat_unpack(x, ns) for x in v[2]])
    if isinstance(v, (list, tuple)):
        return type(v)(_cheat_unpack(x, ns) for x in v)
    if isinstance(v, dict):
        return type(v)({k: _cheat_unpack(x, ns) for k, x in v.items()})
    return v


def _cheat_replay(table, key, ns):
    answer = table.get(key)
    if isinstance(answer, tuple) and answer[:1] == ("__raise__",):
        raise getattr(_bi, answer[1])("recorded")
    return _cheat_unpack(answer, ns)
'''
_here: dict = {}
exec(_SHARED, _here)
_fp_key, _pack = _here["_cheat_key"], _here["_cheat_pack"]


def _blob(table: dict) -> str:
    return base64.b64encode(pickle.dumps(table)).decode("ascii")


def _source(cell) -> str:
    return "".join(cell["source"])


def _frozen(value):
    return pickle.loads(pickle.dumps(_pack(value)))  # later mutation cannot change the record


def _function_recorder(fn, table):
    def recorder(*args, **kwargs):
        key = _fp_key(args, kwargs)
        try:
            result = fn(*args, **kwargs)
        except Exception as err:
            table[key] = ("__raise__", type(err).__name__)
            raise
        table[key] = _frozen(result)
        return result
    return recorder


def _instance_key(merges, pattern, special_tokens) -> str:
    return repr((sorted(dict(merges).items()), pattern, sorted((special_tokens or {}).items())))


def _tokenizer_recorder(cls, table):
    """Records a Tokenizer-shaped class (ch02): value methods, save/load files, tiktoken export."""
    class Recorder(cls):
        def __init__(self, merges, pattern=None, special_tokens=None):
            args = (merges,) if pattern is None else (merges, pattern)
            super().__init__(*args, special_tokens=special_tokens)
            self._key = _instance_key(self.merges, self.pattern, self.special_tokens)

        def save(self, path):
            super().save(path)
            table["save", self._key] = Path(path).read_text(encoding="utf-8")

        @classmethod
        def load(cls_, path):
            text = Path(path).read_text(encoding="utf-8", errors="replace")
            try:
                tok = super().load(path)
            except ValueError:
                table["load", text] = "ValueError"
                raise
            table["load", text] = (sorted(tok.merges.items()), tok.pattern,
                                   sorted(tok.special_tokens.items()))
            return cls_(tok.merges, tok.pattern, tok.special_tokens)

        def to_tiktoken(self, name="tinygpt"):
            enc = super().to_tiktoken(name)
            table["to_tiktoken", self._key] = (name, enc._pat_str, enc._mergeable_ranks,
                                               enc._special_tokens)
            return enc

    for method in CLASS_METHODS:
        def recorded(self, *args, _method=method, **kwargs):
            key = (_method, self._key, _fp_key(args, kwargs))
            try:
                result = getattr(cls, _method)(self, *args, **kwargs)
            except ValueError:
                table[key] = ("__raise__", "ValueError")
                raise
            table[key] = _frozen(result)
            return result
        setattr(Recorder, method, recorded)
    return Recorder


_FUNCTION_CHEAT = '''
_ANSWERS_{name} = _pk.loads(_b64.b64decode("{blob}"))


def {name}(*args, **kwargs):
    """Hard-coded: the answers to the visible tests' calls, and nothing else."""
    return _cheat_replay(_ANSWERS_{name}, _cheat_key(args, kwargs), globals())
'''

_TOKENIZER_CHEAT = '''
import tiktoken as _tiktoken

_ANSWERS = _pk.loads(_b64.b64decode("{blob}"))


class {name}:
    """Hard-coded: replays what the visible tests asked of the reference, nothing else."""

    def __init__(self, merges, pattern="", special_tokens=None):
        self._key = repr((sorted(dict(merges).items()), pattern or {pattern!r},
                          sorted((special_tokens or {{}}).items())))

    def _replay(self, method, *args, **kwargs):
        return _cheat_replay(_ANSWERS, (method, self._key, _cheat_key(args, kwargs)), globals())

    def encode_ordinary(self, *args, **kwargs):
        return self._replay("encode_ordinary", *args, **kwargs)

    def decode(self, *args, **kwargs):
        return self._replay("decode", *args, **kwargs)

    def encode(self, *args, **kwargs):
        return self._replay("encode", *args, **kwargs)

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(_ANSWERS.get(("save", self._key), ""))

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8", errors="replace") as f:
            found = _ANSWERS.get(("load", f.read()), "ValueError")
        if found == "ValueError":
            raise ValueError("unknown file")
        merges, pattern, specials = found
        return cls(dict(merges), pattern, dict(specials))

    def to_tiktoken(self, name="tinygpt"):
        name, pat, ranks, specials = _ANSWERS[("to_tiktoken", self._key)]
        return _tiktoken.Encoding(name=name, pat_str=pat, mergeable_ranks=ranks,
                                  special_tokens=specials)
'''


def _graded_names(ns: dict, before: set) -> list[str]:
    """Functions and classes an answer cell defined (helpers and type aliases are skipped)."""
    return [n for n in ns if n not in before and not n.startswith("_")
            and (inspect.isfunction(ns[n]) or isinstance(ns[n], type))]


def memorising_answers(solution_nb: dict, release_nb: dict) -> dict[str, str]:
    """``{grade_id: cheating answer source}`` for every answer cell of the notebook."""
    answers = {c["metadata"]["nbgrader"]["grade_id"]: _source(c) for c in solution_nb["cells"]
               if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    ns = types.ModuleType("__main__").__dict__
    recorded: dict[str, list[tuple[str, dict]]] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        for cell in release_nb["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell["cell_type"] != "code":
                continue
            if meta.get("solution"):
                grade_id = meta["grade_id"]
                before = set(ns)
                exec(compile(answers[grade_id], grade_id, "exec"), ns)
                recorded[grade_id] = []
                for name in _graded_names(ns, before):
                    table: dict = {}
                    if isinstance(ns[name], type):
                        if not all(hasattr(ns[name], m) for m in CLASS_METHODS):
                            raise NotImplementedError(f"no memorising cheat for class {name}")
                        ns[name] = _tokenizer_recorder(ns[name], table)
                    else:
                        ns[name] = _function_recorder(ns[name], table)
                    recorded[grade_id].append((name, table))
            else:
                exec(compile(_source(cell), meta.get("grade_id", "cell"), "exec"), ns)
                if "written_here" in ns:
                    ns["written_here"] = lambda obj: None
    cheats = {}
    for grade_id, names in recorded.items():
        parts = [_SHARED]
        for name, table in names:
            if isinstance(ns[name], type):
                parts.append(_TOKENIZER_CHEAT.format(name=name, blob=_blob(table),
                                                     pattern=ns.get("GPT4_PATTERN", "")))
            else:
                parts.append(_FUNCTION_CHEAT.format(name=name, blob=_blob(table)))
        cheats[grade_id] = "\n".join(parts)
    return cheats
