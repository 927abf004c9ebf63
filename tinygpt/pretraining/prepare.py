"""Chapter 3's data, cached: the tokenizer trained on the course corpus and its token shards.

Infrastructure, not an exercise (chapter 3 builds the shard format in ``data``).
``prepare_data`` trains chapter 2's tokenizer on ``tinygpt.corpus`` (with the course's
control tokens reserved, ``tinygpt.tokenizer.control``), encodes the corpus,
holds out every twentieth chunk for validation and writes memory-mapped shards, all under
``tinygpt.runtime.CACHE_DIR`` with a key over the corpus, the settings and the code.
``unigram_loss`` is the loss to beat: the model that ignores the context.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinygpt.corpus import course_corpus
from tinygpt.pretraining.data import read_shard, write_shard
from tinygpt.runtime import CACHE_DIR, cache_key
from tinygpt.tokenizer import Tokenizer
from tinygpt.tokenizer.control import CONTROL_TOKENS
SHARD_TOKENS = 1 << 21  # tokens per training shard (4 MiB as uint16)
SPLIT_CHUNK = 1 << 15   # the validation split takes whole chunks of (at most) this many tokens


@dataclass
class Data:
    """A tokenizer and the token shards of the corpus, split into training and validation."""

    tokenizer: Tokenizer
    train: list[np.memmap]
    val: list[np.memmap]
    folder: Path


def prepare_data(vocab_size: int, corpus_bytes: int | None = None, val_fraction: float = 0.05,
                 progress: bool = False) -> Data:
    """Train the tokenizer and shard the corpus, or read both from the cache."""
    text = course_corpus(corpus_bytes)
    encoded = text.encode()
    key = cache_key(encoded, vocab_size, val_fraction,
                    code=("tokenizer", "pretraining/data.py", "pretraining/prepare.py"))
    folder = CACHE_DIR / f"ch03-data-{key}"
    if not (folder / "done").exists():
        folder.mkdir(parents=True, exist_ok=True)
        if progress:
            print(f"training a {vocab_size}-token tokenizer on {len(encoded) / 1e6:.1f} MB "
                  "and sharding the corpus ...", file=sys.stderr)
        tok = Tokenizer.train(text, vocab_size, special_tokens=list(CONTROL_TOKENS),
                              progress=progress)
        tok.save(folder / "tokenizer.json")
        ids = np.array(tok.to_tiktoken().encode_ordinary(text), dtype=np.int64)
        # Every period-th chunk is held out: the corpus's mix drifts along its length.
        # (Chunks shrink for a small corpus, so that validation gets at least 4 of them.)
        period = round(1 / val_fraction)
        size = min(SPLIT_CHUNK, len(ids) // (4 * period))
        chunks = [ids[i:i + size] for i in range(0, len(ids), size)]
        train_ids = np.concatenate([c for i, c in enumerate(chunks) if i % period != period - 1])
        val_ids = np.concatenate([c for i, c in enumerate(chunks) if i % period == period - 1])
        for i, start in enumerate(range(0, len(train_ids), SHARD_TOKENS)):
            write_shard(folder / f"train-{i:03d}.bin", train_ids[start:start + SHARD_TOKENS])
        write_shard(folder / "val-000.bin", val_ids)
        (folder / "done").write_text("")
    return Data(Tokenizer.load(folder / "tokenizer.json"),
                [read_shard(p) for p in sorted(folder.glob("train-*.bin"))],
                [read_shard(p) for p in sorted(folder.glob("val-*.bin"))], folder)


def unigram_loss(data: Data, vocab_size: int) -> float:
    """Cross-entropy (nats) of the validation tokens under the training split's token
    frequencies (add-one smoothed): the loss of a model that ignores the context."""
    counts = sum(np.bincount(s, minlength=vocab_size) for s in data.train).astype(np.float64) + 1
    logp = np.log(counts / counts.sum())
    val = np.concatenate([np.asarray(s) for s in data.val])
    return float(-logp[val].mean())
