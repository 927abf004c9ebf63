"""written_here tells code written in a notebook from the package's reference."""
from __future__ import annotations

import types

import pytest

from tinygpt.checks.common import written_here


def _notebook(source: str) -> dict:
    """Run ``source`` as a notebook kernel would: in a module named __main__."""
    module = types.ModuleType("__main__")
    exec(compile(source, "<cell>", "exec"), module.__dict__)
    return module.__dict__


def test_a_function_written_in_the_notebook_passes():
    ns = _notebook("from tinygpt.tokenizer.primitives import merge\n"
                   "def train_bpe(text, n):\n    return merge([1], (1, 1), 256)\n")
    written_here(ns["train_bpe"])


@pytest.mark.parametrize("source", [
    "from tinygpt.tokenizer.bpe import train_bpe\n",
    "from tinygpt.tokenizer.bpe import train_bpe as _t\ndef train_bpe(*a):\n    return _t(*a)\n",
    "import tinygpt.tokenizer.bpe as b\ndef train_bpe(*a):\n    return [b.train_bpe(*a) for _ in a][0]\n",
    "from tinygpt.tokenizer import tokenizer as t\nclass Tokenizer(t.Tokenizer):\n    pass\n",
    "from tinygpt.tokenizer.tokenizer import Tokenizer as R\nclass Tokenizer:\n"
    "    def encode(self, text):\n        return R({}).encode(text)\n",
])
def test_imported_wrapped_or_inherited_reference_fails(source):
    ns = _notebook(source)
    obj = ns.get("train_bpe") or ns["Tokenizer"]
    with pytest.raises(AssertionError):
        written_here(obj)
