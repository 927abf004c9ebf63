"""Benchmark: encoding throughput, the course encoder against its own tiktoken export.

What it measures: MB/s (1e6 bytes of UTF-8 per second; median of ``--repeats`` runs,
``time.perf_counter``) to encode held-out text with one 4,096-token course tokenizer,

* ``Tokenizer.encode_ordinary`` -- the learner-style encoder, pure Python: GPT-4
  pre-tokenisation, then each pre-token's merges replayed lowest rank first;
* ``Tokenizer.to_tiktoken().encode_ordinary`` -- the same ranks run by tiktoken (Rust).

The tokenizer is trained (``Tokenizer.train``, with ``<|endoftext|>`` as its one special
token) on the first ``--train-mbytes`` MB of the course corpus; the next
``--test-mbytes`` MB are held out and encoded. The script checks that both encoders
give identical ids, and stops if they do not.

Run: ``make bench`` or ``.venv/bin/python bench/tokenizer_encode.py``.
Output: a table, then one JSON line; the same JSON, with machine info, goes to
bench/results/tokenizer_encode.json (read by the chapter 2 book page).
"""
from __future__ import annotations

import argparse
import time

from _common import print_table, report, timed
from tinygpt.runtime import machine_info
from tinygpt.corpus import course_corpus
from tinygpt.tokenizer import Tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--train-mbytes", type=float, default=2, help="training text in MB (1e6 bytes)")
    parser.add_argument("--test-mbytes", type=float, default=2, help="held-out text to encode, in MB")
    parser.add_argument("--vocab-size", type=int, default=4096, help="vocabulary size, special token included")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per encoder (median reported)")
    args = parser.parse_args()

    train_bytes = int(args.train_mbytes * 1_000_000)
    train_text = course_corpus(train_bytes)
    full = course_corpus(train_bytes + int(args.test_mbytes * 1_000_000))
    assert full.startswith(train_text), "course_corpus is no longer prefix-stable"
    test_text = full[len(train_text):]  # held out: never seen in training
    n_bytes = len(test_text.encode("utf-8"))

    start = time.perf_counter()
    tok = Tokenizer.train(train_text, args.vocab_size, special_tokens=["<|endoftext|>"])
    train_s = time.perf_counter() - start
    enc = tok.to_tiktoken()
    print(f"tokenizer: {tok.n_vocab} ids, trained on {len(train_text.encode('utf-8')) / 1e6:.2f} MB "
          f"in {train_s:.1f} s; encoding {n_bytes / 1e6:.2f} MB held out; "
          f"median of {args.repeats} run(s)\n")

    seconds, runs = {}, {}
    seconds["python"], runs["python"], ids_py = timed(lambda: tok.encode_ordinary(test_text),
                                                      args.repeats)
    seconds["tiktoken"], runs["tiktoken"], ids_tt = timed(lambda: enc.encode_ordinary(test_text),
                                                          args.repeats)
    if ids_py != ids_tt:
        first = next((i for i, (a, b) in enumerate(zip(ids_py, ids_tt)) if a != b),
                     min(len(ids_py), len(ids_tt)))
        raise SystemExit(f"encoders disagree: {len(ids_py)} vs {len(ids_tt)} ids, "
                         f"first difference at position {first}")
    mb_per_s = {k: n_bytes / 1e6 / s for k, s in seconds.items()}

    labels = {"python": "tinygpt encode_ordinary (Python)", "tiktoken": "tiktoken export"}
    print_table(["encoder", "seconds", "MB/s", "x python"],
                [[labels[k], f"{seconds[k]:.3f}", f"{v:.2f}", f"{v / mb_per_s['python']:.1f}x"]
                 for k, v in mb_per_s.items()])
    print(f"\nidentical ids from both encoders: yes ({len(ids_py):,} ids, "
          f"{n_bytes / len(ids_py):.2f} bytes per token)")

    summary = {"bench": "tokenizer_encode", "mbytes": round(n_bytes / 1e6, 3),
               "vocab_size": tok.n_vocab, "repeats": args.repeats,
               "seconds": {k: round(v, 4) for k, v in seconds.items()},
               "mb_per_s": {k: round(v, 3) for k, v in mb_per_s.items()},
               "ratio_tiktoken_over_python": round(mb_per_s["tiktoken"] / mb_per_s["python"], 2)}
    details = {"runs_seconds": {k: [round(t, 4) for t in v] for k, v in runs.items()},
               "train_mbytes": round(len(train_text.encode("utf-8")) / 1e6, 3),
               "train_seconds": round(train_s, 3), "n_ids": len(ids_py),
               "bytes_per_token": round(n_bytes / len(ids_py), 3),
               "machine": machine_info(["tinygpt", "regex", "tiktoken"])}
    report("tokenizer_encode", summary, details)


if __name__ == "__main__":
    main()
