"""Benchmark: BPE training time, the course trainer against rustbpe and HF tokenizers.

What it measures: wall time (``time.perf_counter``, median of ``--repeats`` runs) to learn
a 4,096-token byte-level BPE vocabulary (256 bytes + 3,840 merges) on the first
``--mbytes`` MB of the course corpus, with GPT-4 (cl100k) pre-tokenisation, by

* ``tinygpt.tokenizer.bpe.train_bpe`` -- the course trainer, pure Python;
* ``rustbpe.Tokenizer.train_from_iterator`` -- Rust, parallel pre-tokenisation (rayon);
* HF ``tokenizers`` ``BpeTrainer`` -- Rust, byte-level BPE.

Each timed call is the whole training call, pre-tokenisation included. The peers get
the same text cut into lines (before a line that starts with a non-space character, a
cut GPT-4's pattern always makes), so they can spread the work over the cores; the cut
is made once, outside the timing. It also counts how many of the course trainer's
first 100 merges, as byte strings, equal rustbpe's (informative only).

Run: ``make bench`` or ``.venv/bin/python bench/tokenizer_train.py [--mbytes 10]``.
Output: a table, then one JSON line; the same JSON, with machine info, goes to
bench/results/tokenizer_train.json (read by the chapter 2 book page).
Goal: the course trainer within 20x of rustbpe.
"""
from __future__ import annotations

import argparse

import regex
import rustbpe
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

from _common import print_table, report, timed
from tinygpt.runtime import machine_info
from tinygpt.corpus import course_corpus
from tinygpt.tokenizer.bpe import train_bpe, vocab_bytes
from tinygpt.tokenizer.primitives import GPT4_PATTERN, pretokenize

# HF tokenizers compiles patterns with Oniguruma, which reads `{1,3}+` as "one or more
# runs of 1-3 digits" rather than a possessive `{1,3}`, so "12345" would stay whole.
# Possessiveness changes nothing for that branch; dropping it gives GPT-4's cuts exactly.
HF_PATTERN = GPT4_PATTERN.replace(r"\p{N}{1,3}+", r"\p{N}{1,3}")
assert HF_PATTERN != GPT4_PATTERN, "GPT4_PATTERN changed; revisit HF_PATTERN"


def train_ours(text: str, vocab_size: int) -> list[bytes]:
    """Course trainer; returns the merged tokens' bytes in rank order."""
    vocab = vocab_bytes(train_bpe(text, vocab_size, GPT4_PATTERN))
    return [vocab[i] for i in range(256, len(vocab))]


def train_rustbpe(lines: list[str], vocab_size: int) -> list[bytes]:
    """rustbpe; returns the merged tokens' bytes in rank order."""
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(iter(lines), vocab_size, pattern=GPT4_PATTERN)
    ranks = sorted(tok.get_mergeable_ranks(), key=lambda item: item[1])
    return [token for token, rank in ranks if rank >= 256]


def train_hf(lines: list[str], vocab_size: int) -> int:
    """HF tokenizers byte-level BPE; returns the vocabulary size it reached."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(HF_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer=trainer)
    return tok.get_vocab_size()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--mbytes", type=float, default=10, help="corpus size in MB (1e6 bytes)")
    parser.add_argument("--vocab-size", type=int, default=4096, help="vocabulary size, bytes included")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per trainer (median reported)")
    args = parser.parse_args()

    text = course_corpus(int(args.mbytes * 1_000_000))
    lines = regex.split(r"(?<=\n)(?=\S)", text)
    assert "".join(lines) == text
    n_bytes = len(text.encode("utf-8"))
    print(f"corpus: {n_bytes / 1e6:.2f} MB, {len(lines):,} lines; vocab {args.vocab_size}; "
          f"median of {args.repeats} run(s)\n")

    seconds, runs = {}, {}
    seconds["ours"], runs["ours"], ours = timed(lambda: train_ours(text, args.vocab_size), args.repeats)
    seconds["rustbpe"], runs["rustbpe"], rust = timed(
        lambda: train_rustbpe(lines, args.vocab_size), args.repeats)
    seconds["hf_tokenizers"], runs["hf_tokenizers"], hf_size = timed(
        lambda: train_hf(lines, args.vocab_size), args.repeats)
    for name, size in [("ours", 256 + len(ours)), ("rustbpe", 256 + len(rust)),
                       ("hf_tokenizers", hf_size)]:
        if size != args.vocab_size:
            print(f"note: {name} stopped at {size} tokens, not {args.vocab_size}")

    same = sum(a == b for a, b in zip(ours[:100], rust[:100]))
    pieces = pretokenize(text)
    first_diff = next((i for i, (a, b) in enumerate(zip(ours, rust)) if a != b), None)

    labels = {"ours": "tinygpt train_bpe (Python)", "rustbpe": "rustbpe",
              "hf_tokenizers": "HF tokenizers"}
    print_table(["trainer", "seconds", "x rustbpe"],
                [[labels[k], f"{s:.2f}", f"{s / seconds['rustbpe']:.1f}x"] for k, s in seconds.items()])
    print(f"\nfirst 100 merges (as bytes) equal to rustbpe's: {same}/100"
          + (f"; first difference at merge {first_diff}" if first_diff is not None else
             f"; all {len(ours)} equal"))
    print(f"goal: ours within 20x of rustbpe -> "
          f"{'met' if seconds['ours'] <= 20 * seconds['rustbpe'] else 'NOT met'}")

    summary = {"bench": "tokenizer_train", "mbytes": round(n_bytes / 1e6, 3),
               "vocab_size": args.vocab_size, "repeats": args.repeats,
               "seconds": {k: round(v, 4) for k, v in seconds.items()},
               "ratio_ours_over_rustbpe": round(seconds["ours"] / seconds["rustbpe"], 2),
               "ratio_ours_over_hf": round(seconds["ours"] / seconds["hf_tokenizers"], 2),
               "first_100_merges_equal_rustbpe": same, "merges": len(ours),
               "leading_merges_equal_rustbpe": len(ours) if first_diff is None else first_diff,
               "pretokens": len(pieces), "distinct_pretokens": len(set(pieces))}
    details = {"runs_seconds": {k: [round(t, 4) for t in v] for k, v in runs.items()},
               "first_merge_differing_from_rustbpe": first_diff,
               "machine": machine_info(["tinygpt", "regex", "rustbpe", "tokenizers"])}
    report("tokenizer_train", summary, details)


if __name__ == "__main__":
    main()
