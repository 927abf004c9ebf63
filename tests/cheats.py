"""Build a cheating submission: answer cells that memorise what the visible tests ask.

``memorising_answers(solution_nb, release_nb)`` runs the release notebook in this
process with the solution's answers, records every call the *visible* test cells make
to each graded function or class method, and returns replacement answer cells that
replay those recorded answers and know nothing else. Such a submission passes every
visible test and must score 0 once the hidden tests (fresh inputs) run.
"""
from __future__ import annotations

import ast
import contextlib
import tempfile
import types
from pathlib import Path

CLASS_METHODS = ("encode_ordinary", "decode", "encode")


def _source(cell) -> str:
    return "".join(cell["source"])


def _literal(value):
    text = repr(value)
    ast.literal_eval(text)  # only plain data can be hard-coded into a cell
    return value


# The key of a recorded call, shared by the recorder here and the cheat cells (sets are
# sorted: their order differs between processes).
_KEY_SOURCE = '''
def _cheat_key(args, kwargs):
    norm = lambda v: sorted(v) if isinstance(v, (set, frozenset)) else v
    return repr((tuple(norm(a) for a in args), sorted((k, norm(v)) for k, v in kwargs.items())))
'''
exec(_KEY_SOURCE)
_key = _cheat_key  # noqa: F821 - defined by the exec above


def _function_recorder(fn, table):
    def recorder(*args, **kwargs):
        key = _key(args, kwargs)
        try:
            result = fn(*args, **kwargs)
        except Exception as err:
            table[key] = ("__raise__", type(err).__name__)
            raise
        table[key] = _literal(result)
        return result
    return recorder


def _instance_key(merges, pattern, special_tokens) -> str:
    return repr((sorted(dict(merges).items()), pattern, sorted((special_tokens or {}).items())))


def _class_recorder(cls, table):
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
            key = (_method, self._key, _key(args, kwargs))
            try:
                result = getattr(cls, _method)(self, *args, **kwargs)
            except ValueError:
                table[key] = ("__raise__", "ValueError")
                raise
            table[key] = _literal(result)
            return result
        setattr(Recorder, method, recorded)
    return Recorder


_FUNCTION_CHEAT = _KEY_SOURCE.replace("{", "{{").replace("}", "}}") + '''
_ANSWERS_{name} = {table!r}

def {name}(*args, **kwargs):
    """Hard-coded: the answers to the visible tests' calls, and nothing else."""
    answer = _ANSWERS_{name}.get(_cheat_key(args, kwargs))
    if isinstance(answer, tuple) and answer[:1] == ("__raise__",):
        raise {{"KeyError": KeyError, "ValueError": ValueError}}[answer[1]]()
    return answer
'''

_CLASS_CHEAT = _KEY_SOURCE.replace("{", "{{").replace("}", "}}") + '''
import tiktoken as _tiktoken

_ANSWERS = {table!r}


class {name}:
    """Hard-coded: replays what the visible tests asked of the reference, nothing else."""

    def __init__(self, merges, pattern="", special_tokens=None):
        self._key = repr((sorted(dict(merges).items()), pattern or {pattern!r},
                          sorted((special_tokens or {{}}).items())))

    def _replay(self, method, *args, **kwargs):
        answer = _ANSWERS.get((method, self._key, _cheat_key(args, kwargs)))
        if isinstance(answer, tuple) and answer[:1] == ("__raise__",):
            raise ValueError("recorded")
        return answer

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


def memorising_answers(solution_nb: dict, release_nb: dict) -> dict[str, str]:
    """``{grade_id: cheating answer source}`` for every answer cell of the notebook."""
    answers = {c["metadata"]["nbgrader"]["grade_id"]: _source(c) for c in solution_nb["cells"]
               if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    ns = types.ModuleType("__main__").__dict__
    tables: dict[str, dict] = {}
    defined: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        for cell in release_nb["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell["cell_type"] != "code":
                continue
            if meta.get("solution"):
                grade_id = meta["grade_id"]
                source = answers[grade_id]
                before = set(ns)
                exec(compile(source, grade_id, "exec"), ns)
                name = next(n for n in ns if n not in before and not n.startswith("_"))
                defined[grade_id] = name
                tables[grade_id] = {}
                wrap = _class_recorder if isinstance(ns[name], type) else _function_recorder
                ns[name] = wrap(ns[name], tables[grade_id])
            else:
                exec(compile(_source(cell), meta.get("grade_id", "cell"), "exec"), ns)
                if "written_here" in ns:
                    ns["written_here"] = lambda obj: None
    cheats = {}
    for grade_id, name in defined.items():
        table = tables[grade_id]
        if isinstance(ns[name], type):
            pattern = ns.get("GPT4_PATTERN", "")
            cheats[grade_id] = _CLASS_CHEAT.format(name=name, table=table, pattern=pattern)
        else:
            cheats[grade_id] = _FUNCTION_CHEAT.format(name=name, table=table)
    return cheats
