"""Every chapter 1 check rejects a plausible wrong answer (a test must be able to fail)."""
from __future__ import annotations

import hashlib
import unicodedata
from collections import Counter

import pytest
import torch

from tinygpt.checks import ch01 as checks
from tinygpt.curation import clean, neardup, quality
from conftest import seeds_rejecting


def _luhn_wrong_digits(number):
    digits = number.replace(" ", "").replace("-", "")
    if not digits.isdigit() or not 13 <= len(digits) <= 19:
        return False
    total = sum((int(c) * 2 - 9 if int(c) * 2 > 9 else int(c) * 2) if i % 2 == 0 else int(c)
                for i, c in enumerate(reversed(digits)))
    return total % 10 == 0


def _mask_pii_forgetting_cards(text):
    masked, found = clean.mask_pii(text)
    return masked, [f for f in found if f[0] != "card"]


def _train_without_prior(samples, n=3, alpha=0.5):
    model = clean.train_langid(samples, n, alpha)
    return model._replace(log_prior=torch.zeros_like(model.log_prior))


def _gopher_without_dup_ngrams(text):
    return [r for r in quality.gopher_rules(text) if r != "dup_ngram"]


def _dedup_raw(texts):
    seen, keep = set(), []
    for i, t in enumerate(texts):
        h = hashlib.sha1(t.encode()).digest()
        if h not in seen:
            seen.add(h)
            keep.append(i)
    return keep


def _minhash_max(docs, num_perm=128, seed=0, device="cpu", chunk=1 << 16):
    a, b = neardup.permutations(num_perm, seed)
    out = torch.full((len(docs), num_perm), neardup.EMPTY, dtype=torch.int64)
    for d, doc in enumerate(docs):
        if len(doc):
            out[d] = ((doc[:, None] % neardup.PRIME) * a + b).remainder(neardup.PRIME).max(0).values
    return out


def _first_band_only(sig, bands, rows):
    return neardup.lsh_candidates(sig[:, :rows].repeat(1, bands), bands, rows) if bands * rows == \
        sig.shape[1] else neardup.lsh_candidates(sig, bands, rows)


def _keep_largest(sig, bands, rows, threshold=0.8):
    kept = set(neardup.near_duplicates(sig, bands, rows, threshold))
    n = sig.shape[0]
    return sorted(n - 1 - i for i in kept) if len(kept) < n else sorted(kept)


def _uniform_mix(domains, weights, total, seed=0):
    if any(d not in domains for d, w in weights.items() if w > 0):
        raise ValueError("missing")
    return sorted((list(range(len(domains))) * (total // max(1, len(domains)) + 1))[:total])


def _pipeline_on_all(docs, steps):
    report, kept = [], list(docs)
    for name, verdicts in steps:
        results = verdicts(docs)
        kept = [d for d, r in zip(docs, results) if r is None and d in kept]
        report.append({"step": name, "in": len(docs), "kept": len(kept),
                       "removed": len(docs) - len(kept), "reasons": Counter(filter(None, results))})
    return kept, report


MUTANTS = [
    (checks.check_normalize, (lambda t: unicodedata.normalize("NFC", t),)),
    (checks.check_char_ngrams, (lambda t, n: Counter(t.lower()[i:i + n]
                                                     for i in range(len(t) - n + 1)),)),
    (checks.check_langid, (_train_without_prior, clean.identify)),
    (checks.check_luhn, (_luhn_wrong_digits,)),
    (checks.check_mask_pii, (_mask_pii_forgetting_cards,)),
    (checks.check_gopher_rules, (_gopher_without_dup_ngrams,)),
    (checks.check_exact_dedup, (_dedup_raw,)),
    (checks.check_shingles, (lambda text, k=5: neardup.shingles(text, k + 1),)),
    (checks.check_minhash, (_minhash_max,)),
    (checks.check_lsh_probability, (lambda s, b, r: 1 - (1 - s ** b) ** r,)),
    (checks.check_lsh_candidates, (_first_band_only,)),
    (checks.check_near_duplicates, (_keep_largest,)),
    (checks.check_mix_domains, (_uniform_mix,)),
    (checks.check_run_pipeline, (_pipeline_on_all,)),
]


@pytest.mark.parametrize("check,mutant", MUTANTS, ids=lambda x: getattr(x, "__name__", "mutant"))
def test_check_rejects_a_wrong_answer(check, mutant):
    failures = seeds_rejecting(check, mutant, 3)
    assert failures >= 2, f"{check.__name__} let a wrong answer through on {3 - failures} seeds"
