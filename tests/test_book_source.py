"""No book page re-implements the package or types a measured figure.

A page draws from ``tinygpt``, never from a copy:
A function defined in a page's code cell that shares six or more lines with the package
(compared after dropping each attribute's receiver, so ``a.qkv`` matches ``self.qkv``,
and allowing small edits) is a second copy of the model that drifts when the module
changes. The page should call the package instead, and the package should expose what
the page needs. And every figure a page's prose quotes (``{glue:text}`key```) is a path
into a committed record that the page glues (``tinygpt.records``); ``test_book.py``
checks the rendered values.
"""
from __future__ import annotations

import ast
import difflib
import inspect
import io
import re
import textwrap
import tokenize
from functools import lru_cache

import pytest

from conftest import ROOT
from tinygpt import records
from tinygpt.pretraining import attention

PAGES = sorted((ROOT / "book").glob("*.md"))
CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```", re.S | re.M)
SKIPPED = {tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT, tokenize.ENDMARKER,
           tokenize.INDENT, tokenize.DEDENT}
SHORTEST = 12      # characters of a normalised line worth comparing
ALIKE = 0.8        # difflib ratio over tokens at which two lines count as the same
MOST_SHARED = 5    # a page's function may share this many lines with the package, no more


def _normalised(line: str) -> tuple[str, ...]:
    """A line's tokens without comments, with each attribute's receiver dropped."""
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline)
                  if t.type not in SKIPPED]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return tuple(line.split())
    return tuple(t.string for i, t in enumerate(tokens)
                 if not (t.type == tokenize.NAME and i + 1 < len(tokens) and tokens[i + 1].string == "."))


def _worth_comparing(tokens: tuple[str, ...]) -> bool:
    return len(" ".join(tokens)) >= SHORTEST


@lru_cache(maxsize=1)
def _package_lines() -> frozenset[tuple[str, ...]]:
    lines = (_normalised(line) for path in (ROOT / "tinygpt").rglob("*.py")
             for line in path.read_text(encoding="utf-8").splitlines())
    return frozenset(line for line in lines if _worth_comparing(line))


def _in_package(line: tuple[str, ...]) -> bool:
    package = _package_lines()
    if line in package:
        return True
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(line)
    for other in package:
        matcher.set_seq1(other)
        if (matcher.real_quick_ratio() >= ALIKE and matcher.quick_ratio() >= ALIKE
                and matcher.ratio() >= ALIKE):
            return True
    return False


def page_functions(text: str):
    """(name, body lines) of every function defined in the page's code cells."""
    for cell in CELL.findall(text):
        source = "\n".join(line for line in cell.splitlines() if not line.startswith(":"))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        lines = source.splitlines()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield node.name, lines[node.body[0].lineno - 1:node.end_lineno]


def copied_lines(text: str) -> dict[str, list[str]]:
    """Each page function's lines found in the package, for those sharing too many."""
    found = {}
    for name, body in page_functions(text):
        shared = [line.strip() for line in body
                  if _worth_comparing(_normalised(line)) and _in_package(_normalised(line))]
        if len(shared) > MOST_SHARED:
            found[name] = shared
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_no_book_page_redefines_package_code(page):
    copies = copied_lines(page.read_text(encoding="utf-8"))
    assert not copies, (f"{page.name} re-implements package code; call the package instead: "
                        f"{copies}")


def test_a_page_copying_the_attention_module_is_caught():
    forward = textwrap.dedent(inspect.getsource(attention.CausalSelfAttention.forward))
    copied = forward.replace("def forward(self,", "def my_attention(a,").replace("self.", "a.")
    page = f"# A page\n\n```{{code-cell}} python\n:tags: [hide-input]\n{copied}```\n"
    assert "my_attention" in copied_lines(page)


def test_a_page_using_the_package_is_not_flagged():
    page = ("```{code-cell} python\ndef heat(model, ids):\n"
            "    weights = attention_maps(model, ids)[0]\n    return weights.mean(1)\n```\n")
    assert copied_lines(page) == {}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_every_quoted_figure_is_a_record_the_page_glues(page):
    text = page.read_text(encoding="utf-8")
    glued = set(re.findall(r"glue_records\(\"(\w+)\"\)", text))
    for key, spec in records.quoted(text):
        name = key.split(".")[0]
        assert name in glued, f"{page.name} quotes {key} but never calls glue_records({name!r})"
        value = records.figures(name).get(key)
        assert value is not None, f"{page.name} quotes {key}, which {name}.json does not hold"
        format(value, spec)  # a spec the value takes


def test_quoted_reads_keys_and_format_specs():
    text = "a {glue:text}`x.y.z:.2f` b {glue:text}`x.machine.cpu_model` {glue:text}`x.n:,`"
    assert records.quoted(text) == [("x.y.z", ".2f"), ("x.machine.cpu_model", ""), ("x.n", ",")]
    assert "tokenizer_train.seconds.ours" in records.figures("tokenizer_train")
    with pytest.raises(FileNotFoundError, match="there are: .*tokenizer_train"):
        records.record("no_such_bench")
