"""Benchmark: chapter 9's serving encoder against tiktoken on the same ranks.

What it measures: MB/s (1e6 bytes of UTF-8 per second; median of ``--repeats`` runs,
``time.perf_counter``, one process) to encode held-out text with one 4,096-token course
tokenizer, trained (``Tokenizer.train``, the course's control tokens as its specials) on
the first ``--train-mbytes`` MB of the course corpus; the next ``--test-mbytes`` MB are
held out. Side by side, in this order, in one run:

* ``Encoder`` without a cache: rank replay of every pre-token (pure Python);
* ``Encoder`` with a cold cache: a fresh encoder for every timed run;
* ``Encoder`` with a warm cache: a cache filled by encoding the training text first, as a
  server's cache is filled by the prompts before (the held-out text itself never was);
* ``Encoder.encode_batch`` over the held-out text cut into documents, warm cache;
* for scale, the pre-tokenisation regex alone (``findall``, the ``regex`` module's C code),
  which every encoder above runs first;
* tiktoken's ``encode_ordinary`` (Rust, one thread) and ``encode_ordinary_batch`` (its
  thread pool, ``--threads`` threads) built from the same ranks.

The script checks that every encoder gives tiktoken's ids, and stops if one does not.
The issue's goal: the warm-cache encoder at 0.2x tiktoken or more.

Run: ``make bench`` or ``.venv/bin/python bench/engine_tokenize.py``.
Output: a table, then one JSON line; the same JSON, with machine info, goes to
bench/results/engine_tokenize.json (read by the chapter 9 book page).
"""
from __future__ import annotations

import argparse
import os
import time

from _common import print_table, report, timed
from tinygpt.corpus import course_corpus
from tinygpt.engine.tokenization import Encoder
from tinygpt.runtime import machine_info
from tinygpt.tokenizer import Tokenizer
from tinygpt.tokenizer.control import CONTROL_TOKENS


def documents(text: str, n: int) -> list[str]:
    """``text`` cut at blank lines into about ``n`` documents that join back to it."""
    paragraphs = text.split("\n\n")
    size = -(-len(paragraphs) // n)
    return ["\n\n".join(paragraphs[i:i + size]) + ("\n\n" if i + size < len(paragraphs) else "")
            for i in range(0, len(paragraphs), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--train-mbytes", type=float, default=2, help="training text in MB (1e6 bytes)")
    parser.add_argument("--test-mbytes", type=float, default=2, help="held-out text to encode, in MB")
    parser.add_argument("--vocab-size", type=int, default=4096, help="vocabulary size, specials included")
    parser.add_argument("--documents", type=int, default=256, help="documents in the batch")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="tiktoken's batch threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per encoder (median reported)")
    args = parser.parse_args()

    train_bytes = int(args.train_mbytes * 1_000_000)
    train_text = course_corpus(train_bytes)
    full = course_corpus(train_bytes + int(args.test_mbytes * 1_000_000))
    assert full.startswith(train_text), "course_corpus is no longer prefix-stable"
    test_text = full[len(train_text):]
    docs = documents(test_text, args.documents)
    assert "".join(docs) == test_text
    n_bytes = len(test_text.encode("utf-8"))
    tok = Tokenizer.train(train_text, args.vocab_size, special_tokens=list(CONTROL_TOKENS))
    enc = tok.to_tiktoken()
    warm = Encoder(tok)
    start = time.perf_counter()
    warm.encode_ordinary(train_text)
    fill_s = time.perf_counter() - start
    print(f"tokenizer: {tok.n_vocab} ids; encoding {n_bytes / 1e6:.2f} MB held out "
          f"({len(docs)} documents in the batch); warm cache: {len(warm.cache):,} pre-tokens "
          f"from the training text ({fill_s:.1f} s); median of {args.repeats} run(s)\n")

    runs_to_time = {
        "no_cache": lambda: Encoder(tok, 0).encode_ordinary(test_text),
        "cold_cache": lambda: Encoder(tok).encode_ordinary(test_text),
        "warm_cache": lambda: warm.encode_ordinary(test_text),
        "warm_batch": lambda: [i for ids in warm.encode_batch(docs) for i in ids],
        "tiktoken": lambda: enc.encode_ordinary(test_text),
        "tiktoken_batch": lambda: [i for ids in enc.encode_ordinary_batch(docs, num_threads=args.threads)
                                   for i in ids],
    }
    want = enc.encode_ordinary(test_text)
    seconds, runs = {}, {}
    seconds["split_only"], runs["split_only"], _ = timed(lambda: warm.split.findall(test_text),
                                                         args.repeats)
    for name, fn in runs_to_time.items():
        seconds[name], runs[name], ids = timed(fn, args.repeats)
        if ids != want:
            raise SystemExit(f"{name} disagrees with tiktoken: {len(ids)} vs {len(want)} ids")
    hits = warm.cache.hits / (warm.cache.hits + warm.cache.misses)
    mb_per_s = {k: n_bytes / 1e6 / s for k, s in seconds.items()}
    labels = {"split_only": "the regex split alone (no ids)", "no_cache": "Encoder, no cache", "cold_cache": "Encoder, cold cache",
              "warm_cache": "Encoder, warm cache", "warm_batch": "Encoder.encode_batch, warm",
              "tiktoken": "tiktoken encode_ordinary",
              "tiktoken_batch": f"tiktoken encode_ordinary_batch ({args.threads} threads)"}
    print_table(["encoder", "seconds", "MB/s", "x tiktoken"],
                [[labels[k], f"{seconds[k]:.3f}", f"{v:.2f}", f"{v / mb_per_s['tiktoken']:.2f}x"]
                 for k, v in mb_per_s.items()])
    print(f"\nidentical ids from every encoder: yes ({len(want):,} ids); warm cache hit rate "
          f"{hits:.1%} over all its lookups")

    summary = {"bench": "engine_tokenize", "mbytes": round(n_bytes / 1e6, 3),
               "vocab_size": tok.n_vocab, "repeats": args.repeats,
               "mb_per_s": {k: round(v, 3) for k, v in mb_per_s.items()},
               "ratio_warm_over_tiktoken": round(mb_per_s["warm_cache"] / mb_per_s["tiktoken"], 3),
               "ratio_cold_over_tiktoken": round(mb_per_s["cold_cache"] / mb_per_s["tiktoken"], 3),
               "ratio_batch_over_tiktoken_batch": round(mb_per_s["warm_batch"]
                                                        / mb_per_s["tiktoken_batch"], 3)}
    details = {"seconds": {k: round(v, 4) for k, v in seconds.items()},
               "runs_seconds": {k: [round(t, 4) for t in v] for k, v in runs.items()},
               "documents": len(docs), "tiktoken_threads": args.threads,
               "warm_cache_entries": len(warm.cache), "warm_hit_rate": round(hits, 4),
               "cache_capacity": warm.cache.capacity, "n_ids": len(want),
               "machine": machine_info(["tinygpt", "regex", "tiktoken"])}
    report("engine_tokenize", summary, details)


if __name__ == "__main__":
    main()
