"""Every chapter 2 check rejects a plausible wrong answer (a test must be able to fail)."""
from __future__ import annotations

import pytest

from tinygpt.checks import ch02 as checks
from tinygpt.tokenizer import Tokenizer, bpe, primitives
from conftest import seeds_rejecting


def _mutant_class(**methods):
    return type("Mutant", (Tokenizer,), methods)


def _heap_ties_to_largest(text, vocab_size, pattern=primitives.GPT4_PATTERN, progress=False):
    words = [list(p.encode()) for p in primitives.pretokenize(text, pattern)]
    merges = {}
    for idx in range(256, vocab_size):
        counts = {}
        for w in words:
            for p in zip(w, w[1:]):
                counts[p] = counts.get(p, 0) + 1
        if not counts:
            break
        best = max(counts, key=lambda p: (counts[p], p))
        merges[best] = idx
        words = [primitives.merge(w, best, idx) for w in words]
    return merges


def _encode_by_first_pair(data, merges):
    ids = list(data)
    changed = True
    while changed:
        changed = False
        for pair in zip(ids, ids[1:]):
            if pair in merges:
                ids = primitives.merge(ids, pair, merges[pair])
                changed = True
                break
    return ids


def _ordinary_ignoring_specials(self, text, allowed_special=frozenset(), disallowed_special="all"):
    return self.encode_ordinary(text)


def _save_without_version(self, path):
    import json
    path.write_text(json.dumps({"format": "tinygpt-bpe", "pattern": self.pattern,
                                "special_tokens": self.special_tokens,
                                "merges": [list(p) for p in self.merges]}))


MUTANTS = [
    (checks.check_pretokenize, lambda text, pattern=None: text.split(" ")),
    (checks.check_get_stats, lambda ids: {p: 1 for p in zip(ids, ids[1:])}),
    (checks.check_merge, lambda ids, pair, idx: [idx if x == pair[0] else x for x in ids]),
    (checks.check_merge_with_delta,
     lambda word, pair, idx: (primitives.merge(word, pair, idx), {})),
    (checks.check_train_bpe, _heap_ties_to_largest),
    (checks.check_encode_chunk, _encode_by_first_pair),
    (checks.check_decode_bytes, lambda ids, vocab: b"".join(vocab.get(i, b"") for i in ids)),
    (checks.check_roundtrip, _mutant_class(decode=lambda self, ids: bytes(
        b for i in ids for b in self.vocab[i]).decode("utf-8", errors="ignore"))),
    (checks.check_special_tokens, _mutant_class(encode=_ordinary_ignoring_specials)),
    (checks.check_save_load, _mutant_class(save=_save_without_version)),
    (checks.check_tiktoken_export, _mutant_class(to_tiktoken=lambda self, name="x": __import__(
        "tiktoken").Encoding(name=name, pat_str=r"\S+|\s+", mergeable_ranks={
            self.vocab[i]: i for i in range(256 + len(self.merges))},
        special_tokens=self.special_tokens))),
]


@pytest.mark.parametrize("check,mutant", MUTANTS, ids=lambda x: getattr(x, "__name__", "mutant"))
def test_check_rejects_a_wrong_answer(check, mutant):
    failures = seeds_rejecting(check, (mutant,), 4)
    assert failures >= 3, f"{check.__name__} let a wrong answer through on {4 - failures} seeds"


def test_stubs_fail_every_check():
    def stub(*args, **kwargs):
        raise NotImplementedError

    for check, _ in MUTANTS[:7]:
        with pytest.raises(NotImplementedError):
            check(stub, seed=0)


def test_noisy_code_fails_the_quiet_rule():
    def noisy(text, vocab_size, pattern=None, progress=False):
        import sys
        print("merging...", file=sys.stderr)
        return bpe.train_bpe(text, vocab_size)

    with pytest.raises(AssertionError, match="quiet"):
        checks.check_train_bpe(noisy, seed=0)
