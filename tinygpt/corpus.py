"""The course corpus: the text the tokenizer (ch02) and the model (ch03) train on.

This module is the one seam between data and training. The corpus is chapter 1's
output: a generated crawl of about 20 MB (real plays and standard-library code, the
invented island, forums, spam, other languages, duplicates and personal data) run
through the curation pipeline, with personal data masked and domains mixed by weight.
It is built once, with a progress bar, and cached under ``.cache/`` with a key that
changes whenever the curation code or the world changes:

    python -m tinygpt.corpus        # build it unless cached (make setup does this)
"""
from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

from tinygpt.runtime import CACHE_DIR, cache_key

CRAWL_BYTES = 20_000_000  # raw crawl size; the curated corpus is a bit over half of it
CRAWL_SEED = 0


def _cache_key() -> str:
    """A digest of everything the corpus depends on: the curation code, the world, the size."""
    return cache_key(CRAWL_BYTES, CRAWL_SEED, code=("curation", "world.py", "corpus.py"))


def corpus_path() -> Path:
    return CACHE_DIR / f"corpus-{_cache_key()}.txt"


def build_corpus(progress: bool = True) -> Path:
    """Generate the crawl, curate it, and write the corpus file (atomically); return its path.

    Corpora cached by older versions of the code are removed.
    """
    from tinygpt.curation.crawl import generate_crawl
    from tinygpt.curation.pipeline import curate

    path = corpus_path()
    crawl = generate_crawl(n_bytes=CRAWL_BYTES, seed=CRAWL_SEED)
    curated = curate(crawl, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(curated.text(), encoding="utf-8")
    tmp.replace(path)
    for old in path.parent.glob("corpus-*.txt"):
        if old != path:
            old.unlink(missing_ok=True)
    if progress:
        print(f"{len(crawl.pages):,} pages ({crawl.n_bytes / 1e6:.1f} MB) crawled", file=sys.stderr)
        for row in curated.report:
            print(f"  {row['step']:<12} kept {row['kept']:>6,} of {row['in']:>6,}", file=sys.stderr)
        print(f"corpus: {len(curated.mixed):,} documents, {path.stat().st_size / 1e6:.1f} MB "
              f"-> {path}", file=sys.stderr)
    return path


@lru_cache(maxsize=1)
def _corpus_bytes() -> bytes:
    path = corpus_path()
    if not path.exists():
        path = build_corpus(progress=False)
    return path.read_bytes()


def course_corpus(max_bytes: int | None = None) -> str:
    """The course corpus, or its first ``max_bytes`` bytes cut at a paragraph boundary.

    Every smaller request is a prefix of every larger one. Asking for more than the
    corpus holds is an error, not a silent shortfall.
    """
    data = _corpus_bytes()
    if max_bytes is None:
        return data.decode("utf-8")
    if max_bytes > len(data):
        raise ValueError(f"the course corpus holds {len(data):,} bytes; {max_bytes:,} were asked for")
    cut = data.rfind(b"\n\n", 0, max_bytes + 1)
    return data[: cut if cut > 0 else max_bytes].decode("utf-8", errors="ignore")


if __name__ == "__main__":
    if corpus_path().exists():
        print(f"the course corpus is up to date: {corpus_path()}", file=sys.stderr)
    else:
        build_corpus(progress=True)
