"""Property checks for chapter 1 (data curation), run against anyone's code.

Notebook test cells call these on the learner's functions (visible cells with seed 0,
hidden cells with fresh seeds, which also means freshly generated crawls); pytest calls
them on the exported reference. Each compares with an oracle written here independently
(plain loops, a slow rule-by-rule Gopher implementation, brute-force clustering) or with
the reference, on random inputs, and checks invariants and scored ground truth: MinHash is
unbiased, LSH follows its S-curve, masking finds every planted item and touches nothing
else, language ID clears an accuracy floor. Checks print nothing.

Imports: chapter 1's reference (``tinygpt.curation``) and nothing later.
"""
from __future__ import annotations

import math
import random
import re
import unicodedata
import zlib
from collections import Counter

import torch

from tinygpt.checks.common import mismatch, raises_value_error, written_here
from tinygpt.curation import clean as ref_clean
from tinygpt.curation import neardup as ref_near
from tinygpt.curation import quality as ref_quality
from tinygpt.curation.crawl import (decoy_sentence, generate_crawl, labelled_samples,
                                    luhn_checksum_digit, pii_sentence, play_scenes)

__all__ = ["written_here", "check_normalize", "check_char_ngrams", "check_langid", "check_luhn",
           "check_mask_pii", "check_gopher_rules", "slow_gopher_rules", "check_exact_dedup",
           "check_shingles", "check_minhash", "check_lsh_probability", "check_lsh_candidates",
           "check_near_duplicates", "check_mix_domains", "check_run_pipeline"]


def _crawl_texts(seed: int, n: int = 120) -> list[str]:
    return [p.text for p in generate_crawl(n, seed=seed + 1000).pages]


# ---------------------------------------------------------------- notebook 1

_MESS = ["word", "  ", "   ", "\t", "\u00a0", "\u200b", "\ufeff", "\r\n", "\r", "\n", "\n\n\n\n",
         "e\u0301", "A\u030a", "\x00", "\x07", "\x1b", "\u200d", "\U0001f469\u200d\U0001f4bb",
         "    indented", " trailing   ", "café", "ﬁ", ".", "x  =  1"]


def _messy(rng: random.Random) -> str:
    return "".join(rng.choice(_MESS) for _ in range(rng.randrange(0, 40)))


def check_normalize(normalize, seed: int) -> None:
    """Equal to the reference on messy text; idempotent; NFC; no stray whitespace or controls."""
    rng = random.Random(seed)
    texts = [_messy(rng) for _ in range(60)] + _crawl_texts(seed, 20)
    for text in texts:
        got = normalize(text)
        expected = ref_clean.normalize(text)
        if got != expected:
            raise mismatch("normalize(text) differs from the reference", text, expected, got)
        problems = []
        if normalize(got) != got:
            problems.append("not idempotent")
        if unicodedata.normalize("NFC", got) != got:
            problems.append("not NFC")
        if "\r" in got or "\n\n\n" in got or got != got.strip():
            problems.append("line endings, blank lines or outer whitespace left")
        if any(line.endswith(" ") for line in got.split("\n")):
            problems.append("trailing spaces left")
        if any(ch != "\n" and unicodedata.category(ch) == "Cc" or ch in "\u200b\ufeff"
               for ch in got):
            problems.append("control or zero-width characters left")
        if problems:
            raise mismatch("normalize(text): " + ", ".join(problems), text, expected, got)


def check_char_ngrams(char_ngrams, seed: int) -> None:
    """Counts equal a plain sliding window over ' ' + lower + ' '."""
    rng = random.Random(seed)
    for _ in range(30):
        text = _messy(rng)[:30] + rng.choice(["Bank", "river", "ÉTÉ", ""])
        n = rng.randrange(1, 5)
        padded = " " + text.lower() + " "
        expected = Counter()
        for i in range(len(padded) - n + 1):
            expected[padded[i:i + n]] += 1
        got = char_ngrams(text, n)
        if Counter(got) != expected:
            raise mismatch(f"char_ngrams(text, {n}) is wrong", text, expected, got)


def check_langid(train_langid, identify, seed: int) -> None:
    """Tables equal the reference's; at least 97% accuracy on held-out samples."""
    train = labelled_samples(n_per_lang=40, seed=seed + 100)
    held = labelled_samples(n_per_lang=30, seed=seed + 200)
    n, alpha = (3, 0.5) if seed % 2 == 0 else (2, 1.0)
    got, ref = train_langid(train, n=n, alpha=alpha), ref_clean.train_langid(train, n, alpha)
    if list(got.classes) != ref.classes or dict(got.index) != ref.index or got.n != n:
        raise AssertionError(f"train_langid: classes, index or n differ from the reference "
                             f"(classes {list(got.classes)} vs {ref.classes}, "
                             f"{len(got.index)} vs {len(ref.index)} n-grams)")
    for name in ("log_probs", "log_prior"):
        a, b = getattr(got, name), getattr(ref, name)
        if a.shape != b.shape or not torch.allclose(a.double(), b, atol=1e-9, rtol=1e-9):
            diff = (a.double() - b).abs().max().item() if a.shape == b.shape else "shape"
            raise AssertionError(f"train_langid: {name} differs from the reference (max |diff| "
                                 f"{diff}); check the smoothing and the unseen row")
    mass = torch.exp(got.log_probs[:-1].double()).sum(0)
    if not torch.allclose(mass, torch.ones_like(mass), atol=1e-6):
        raise AssertionError(f"P(g | c) must sum to 1 over the vocabulary for each class: {mass}")
    right = sum(identify(got, text) == label for text, label in held)
    agree = sum(identify(got, text) == ref_clean.identify(ref, text) for text, _ in held)
    if right < 0.97 * len(held) or agree < 0.99 * len(held):
        raise AssertionError(f"identify: {right}/{len(held)} held-out samples right, "
                             f"{agree}/{len(held)} agree with the reference")
    for text in ("", "x"):
        if identify(got, text) != ref_clean.identify(ref, text):
            raise mismatch("identify on a tiny text (use the prior)", text,
                        ref_clean.identify(ref, text), identify(got, text))


_DOUBLED = [0, 2, 4, 6, 8, 1, 3, 5, 7, 9]


def _luhn_oracle(number: str) -> bool:
    digits = [c for c in number if c not in " -"]
    if not all(c in "0123456789" for c in digits) or not 13 <= len(digits) <= 19:
        return False
    odd = sum(int(c) for c in digits[::-2])
    even = sum(_DOUBLED[int(c)] for c in digits[-2::-2])
    return (odd + even) % 10 == 0


def check_luhn(luhn_valid, seed: int) -> None:
    """Agrees with an independent Luhn implementation on valid, corrupted and odd inputs."""
    rng = random.Random(seed)
    for _ in range(60):
        length = rng.randrange(11, 21)
        payload = "".join(str(rng.randrange(10)) for _ in range(length - 1))
        number = payload + luhn_checksum_digit(payload)
        if rng.random() < 0.5:  # corrupt one digit
            i = rng.randrange(len(number))
            number = number[:i] + str((int(number[i]) + rng.randrange(1, 10)) % 10) + number[i + 1:]
        sep = rng.choice(["", " ", "-"])
        number = sep.join(number[i:i + 4] for i in range(0, len(number), 4))
        if rng.random() < 0.1:
            number = number.replace(number[0], rng.choice("a٣x"), 1)
        if bool(luhn_valid(number)) != _luhn_oracle(number):
            raise mismatch("luhn_valid(number) is wrong", number, _luhn_oracle(number),
                        luhn_valid(number))


def check_mask_pii(mask_pii, seed: int) -> None:
    """Every planted item masked and reported in order; decoys and clean text untouched."""
    rng = random.Random(seed)
    scenes = play_scenes()
    for _ in range(25):
        parts, planted = [], []
        for _ in range(rng.randrange(1, 6)):
            scene = rng.choice(scenes)
            start = rng.randrange(len(scene) - 200)
            parts.append(scene[start:start + rng.randrange(20, 200)])
            roll = rng.random()
            if roll < 0.5:
                sentence, item = pii_sentence(rng)
                parts.append(sentence)
                planted.append(item)
            elif roll < 0.8:
                parts.append(decoy_sentence(rng)[0])
        text = " ".join(parts)
        masked, found = mask_pii(text)
        expected_masked, expected_found = ref_clean.mask_pii(text)
        if [tuple(f) for f in found] != expected_found:
            raise mismatch("mask_pii: found items differ", text, expected_found, found)
        if masked != expected_masked:
            raise mismatch("mask_pii: masked text differs", text, expected_masked, masked)
        for kind, value in planted:
            if value in masked or (kind, value) not in expected_found:
                raise mismatch(f"mask_pii missed a planted {kind}", text, value, masked)
    clean = [rng.choice(scenes)[:2000] for _ in range(5)] + [decoy_sentence(rng)[0]
                                                              for _ in range(20)]
    for text in clean:
        masked, found = mask_pii(text)
        if masked != text or found:
            raise mismatch("mask_pii changed text that holds no personal data", text, text, masked)


# ---------------------------------------------------------------- notebook 2

def slow_gopher_rules(text: str) -> list[str]:
    """The Gopher rules written out one by one, as the oracle for ``gopher_rules``."""
    words = text.split()
    if not words:
        return ["word_count"]
    chars = sum(len(w) for w in words)
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    paragraphs = [p.strip() for p in re.split(r"\n{2,}", text) if p.strip()]

    def duplicates(items):
        seen, repeated = set(), []
        for item in items:
            if item in seen:
                repeated.append(item)
            seen.add(item)
        return repeated

    def top_ngram_share(n):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        if not grams:
            return 0.0
        counts = Counter(grams)
        best = max(counts.values())
        first = next(g for g in counts if counts[g] == best)
        return best * sum(len(w) for w in first) / chars

    def dup_ngram_share(n):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        counts = Counter(grams)
        covered = set()
        for i, g in enumerate(grams):
            if counts[g] > 1:
                covered.update(range(i, i + n))
        return sum(len(words[i]) for i in covered) / chars

    dup_lines, dup_paras = duplicates(lines), duplicates(paragraphs)
    tests = [
        ("word_count", not 50 <= len(words) <= 100_000),
        ("mean_word_length", not 3 <= chars / len(words) <= 10),
        ("symbol_ratio", text.count("#") > 0.1 * len(words)
         or text.count("...") + text.count("…") > 0.1 * len(words)),
        ("bullet_lines", bool(lines) and sum(ln[:1] in "-*•·‣" for ln in lines) > 0.9 * len(lines)),
        ("ellipsis_lines", bool(lines) and
         sum(ln.endswith("...") or ln.endswith("…") for ln in lines) > 0.3 * len(lines)),
        ("alpha_words", sum(bool(re.search(r"[^\W\d_]", w)) for w in words) < 0.8 * len(words)),
        ("stop_words", sum(w.lower() in ref_quality.STOP_WORDS for w in words) < 2),
        ("dup_lines", bool(lines) and len(dup_lines) > 0.3 * len(lines)),
        ("dup_line_chars", bool(lines) and sum(map(len, dup_lines)) > 0.2 * sum(map(len, lines))),
        ("dup_paragraphs", bool(paragraphs) and len(dup_paras) > 0.3 * len(paragraphs)),
        ("dup_paragraph_chars", bool(paragraphs) and
         sum(map(len, dup_paras)) > 0.2 * sum(map(len, paragraphs))),
        ("top_ngram", any(top_ngram_share(n) > limit
                          for n, limit in ref_quality.TOP_NGRAM_MAX.items())),
        ("dup_ngram", any(dup_ngram_share(n) > limit
                          for n, limit in ref_quality.DUP_NGRAM_MAX.items())),
    ]
    return [name for name, failed in tests if failed]


def _edge_documents(rng: random.Random) -> list[str]:
    base = " ".join(rng.choice(play_scenes()).split()[:120])
    return ["", "word " * 40, "- item one\n- item two\n- item three\n" * 20,
            "and so it goes...\n" * 30 + base, "#tag #more " * 30 + base,
            (base + "\n") * 4, base + "\n\n" + base + "\n\n" + base, "1234 5678 " * 40,
            "the of " * 10 + "supercalifragilistic " * 50, base]


def check_gopher_rules(gopher_rules, seed: int) -> None:
    """Same failed rules, in the same order, as the slow oracle, on crawl pages and edge cases."""
    rng = random.Random(seed)
    texts = [ref_clean.normalize(t) for t in _crawl_texts(seed, 80)] + _edge_documents(rng)
    for text in texts:
        got = list(gopher_rules(text))
        expected = slow_gopher_rules(text)
        if got != expected:
            raise mismatch("gopher_rules(text) differs from the slow rule-by-rule oracle",
                        text, expected, got)


def check_exact_dedup(exact_dedup, seed: int) -> None:
    """Keeps exactly the first of each group of texts equal after normalisation, in order."""
    rng = random.Random(seed)
    originals = _crawl_texts(seed, 40)
    texts = []
    for _ in range(80):
        text = rng.choice(originals)
        variant = rng.randrange(3)
        texts.append(text.replace("\n", "\r\n") if variant == 0 else
                     "  " + text + "\n\n\n" if variant == 1 else text)
    first: dict[str, int] = {}
    for i, text in enumerate(texts):
        first.setdefault(ref_clean.normalize(text), i)
    expected = sorted(first.values())
    got = list(exact_dedup(texts))
    if got != expected:
        raise mismatch("exact_dedup keeps the wrong documents", f"{len(texts)} texts", expected, got)


# ---------------------------------------------------------------- notebook 3

def check_shingles(shingles, seed: int) -> None:
    """Sorted distinct CRC-32 of word k-grams, as an int64 tensor."""
    rng = random.Random(seed)
    texts = [t[:rng.randrange(1, 600)] for t in _crawl_texts(seed, 15)] + ["", "one", "A b"]
    for text in texts:
        k = rng.randrange(1, 8)
        words = text.lower().split()
        grams = set()
        for i in range(len(words)):
            if i + k <= len(words) or (i == 0 and words):
                grams.add(" ".join(words[i:i + k]))
        expected = sorted({zlib.crc32(g.encode("utf-8")) for g in grams})
        got = shingles(text, k)
        if not isinstance(got, torch.Tensor) or got.dtype != torch.int64:
            raise mismatch("shingles must return an int64 tensor", text, "torch.int64", type(got))
        if got.tolist() != expected:
            raise mismatch(f"shingles(text, {k}) is wrong", text, expected, got.tolist())


def _sets_with_jaccard(rng: random.Random, universe: int = 10**9) -> tuple[list[int], list[int], float]:
    union = rng.randrange(20, 200)
    inter = rng.randrange(0, union + 1)
    values = rng.sample(range(universe), union)
    only = union - inter
    split = rng.randrange(0, only + 1)
    shared = values[:inter]
    a = shared + values[inter:inter + split]
    b = shared + values[inter + split:]
    return a, b, inter / union


def check_minhash(minhash, seed: int) -> None:
    """Exactly the reference's signatures; chunking changes nothing; the estimate is unbiased."""
    rng = random.Random(seed)
    docs = [torch.tensor(sorted(rng.sample(range(2**32), rng.randrange(0, 50))), dtype=torch.int64)
            for _ in range(30)]
    num_perm = rng.choice([16, 64, 128])
    got = minhash(docs, num_perm=num_perm, seed=seed)
    a, b = ref_near.permutations(num_perm, seed)
    expected = torch.full((len(docs), num_perm), ref_near.EMPTY, dtype=torch.int64)
    for d, doc in enumerate(docs):  # the oracle: one document and one function at a time
        for i in range(num_perm):
            for x in doc.tolist():
                expected[d, i] = min(int(expected[d, i]), (int(a[i]) * (x % ref_near.PRIME)
                                                           + int(b[i])) % ref_near.PRIME)
    if got.shape != expected.shape or not torch.equal(got.cpu(), expected):
        raise AssertionError(f"minhash differs from a plain loop over documents and hash "
                             f"functions ({(got.cpu() != expected).sum().item()} entries)")
    if not torch.equal(minhash(docs, num_perm=num_perm, seed=seed, chunk=7).cpu(), expected):
        raise AssertionError("minhash gives different signatures with a small chunk size")
    pairs = [_sets_with_jaccard(rng) for _ in range(150)]
    sets = [torch.tensor(s, dtype=torch.int64) for a_, b_, _ in pairs for s in (a_, b_)]
    sig = minhash(sets, num_perm=256, seed=seed).cpu()
    errors = [(sig[2 * k] == sig[2 * k + 1]).double().mean().item() - j
              for k, (_, _, j) in enumerate(pairs)]
    mean = sum(errors) / len(errors)
    spread = math.sqrt(sum(j * (1 - j) for _, _, j in pairs) / 256) / len(pairs)
    if abs(mean) > 4 * spread + 1e-3:
        raise AssertionError(f"MinHash estimates are biased: mean error {mean:+.4f} over "
                             f"{len(pairs)} pairs (allowed about ±{4 * spread:.4f})")


def check_lsh_probability(lsh_probability, seed: int) -> None:
    """1 - (1 - s^r)^b, increasing in s, 0 at s = 0 and 1 at s = 1."""
    rng = random.Random(seed)
    for _ in range(30):
        s, bands, rows = rng.random(), rng.randrange(1, 40), rng.randrange(1, 16)
        expected = 1 - (1 - s ** rows) ** bands
        got = lsh_probability(s, bands, rows)
        if abs(got - expected) > 1e-12:
            raise mismatch(f"lsh_probability(s, {bands}, {rows})", s, expected, got)
    if lsh_probability(0.0, 8, 4) != 0.0 or abs(lsh_probability(1.0, 8, 4) - 1.0) > 1e-12:
        raise AssertionError("lsh_probability must be 0 at s=0 and 1 at s=1")


def _band_oracle(signatures: torch.Tensor, bands: int, rows: int) -> set:
    pairs, sig = set(), signatures.tolist()
    for band in range(bands):
        groups: dict[tuple, list[int]] = {}
        for i, row in enumerate(sig):
            groups.setdefault(tuple(row[band * rows:(band + 1) * rows]), []).append(i)
        for members in groups.values():
            pairs.update((x, y) for x in members for y in members if x < y)
    return pairs


def check_lsh_candidates(lsh_candidates, seed: int) -> None:
    """Same pairs as a dictionary per band; bad shapes raise; rates follow the S-curve."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(5):
        bands, rows = rng.randrange(1, 9), rng.randrange(1, 5)
        sig = torch.randint(0, 3, (rng.randrange(2, 40), bands * rows), generator=gen)
        got = set(map(tuple, lsh_candidates(sig, bands, rows)))
        expected = _band_oracle(sig, bands, rows)
        if got != expected:
            raise mismatch(f"lsh_candidates(sig, {bands}, {rows})", sig.tolist()[:4], sorted(expected)[:10],
                        sorted(got)[:10])
    raises_value_error("lsh_candidates with bands * rows != the signature width",
                       lambda: lsh_candidates(torch.zeros(3, 10, dtype=torch.int64), 3, 3))
    bands, rows, n_pairs = 8, 4, 300
    for s in (0.3, 0.6, 0.85):
        base = torch.randint(0, 2**31, (n_pairs, bands * rows), generator=gen)
        keep = torch.rand(n_pairs, bands * rows, generator=gen) < s
        other = torch.where(keep, base, base + 1)
        sig = torch.stack([base, other], 1).reshape(2 * n_pairs, bands * rows)
        found = lsh_candidates(sig, bands, rows)
        rate = sum((2 * k, 2 * k + 1) in found for k in range(n_pairs)) / n_pairs
        p = 1 - (1 - s ** rows) ** bands
        if abs(rate - p) > 4 * math.sqrt(p * (1 - p) / n_pairs) + 0.02:
            raise AssertionError(f"candidate rate {rate:.3f} at similarity {s} is off the "
                                 f"S-curve 1-(1-s^r)^b = {p:.3f}")


def check_near_duplicates(near_duplicates, seed: int) -> None:
    """Keeps the smallest index of each verified cluster; on a crawl, one page per planted cluster."""
    crawl = generate_crawl(250, seed=seed + 1000)
    texts = [ref_clean.normalize(p.text) for p in crawl.pages]
    sig = ref_near.minhash([ref_near.shingles(t) for t in texts], 128, seed=seed)
    for threshold in (0.5, 0.8):
        got = list(near_duplicates(sig, 16, 8, threshold))
        parent = list(range(len(texts)))

        def root(i):
            while parent[i] != i:
                i = parent[i]
            return i
        for i, j in sorted(_band_oracle(sig, 16, 8)):
            if (sig[i] == sig[j]).double().mean().item() >= threshold:
                ri, rj = root(i), root(j)
                parent[max(ri, rj)] = min(ri, rj)
        expected = [i for i in range(len(texts)) if root(i) == i]
        if got != expected:
            raise mismatch(f"near_duplicates(sig, 16, 8, {threshold}) keeps the wrong pages",
                        f"{len(texts)} crawl pages", expected[:20], got[:20])
    kept = set(got)
    exact = crawl.truth.exact_duplicate_of
    leaked = [i for i in exact if i in kept and texts[i] == texts[exact[i]]]
    if leaked:
        raise AssertionError(f"exact copies survived near-duplicate removal: pages {leaked[:5]}")


def check_mix_domains(mix_domains, seed: int) -> None:
    """Counts follow the weights; use within a domain is even; equal to the reference; errors."""
    rng = random.Random(seed)
    names = ["code", "forum", "prose", "web", "world"]
    for _ in range(10):
        domains = [rng.choice(names[:rng.randrange(2, 6)]) for _ in range(rng.randrange(5, 60))]
        present = sorted(set(domains))
        weights = {d: rng.choice([0.0, 0.1, 0.3, 1.0, 2.5]) for d in present}
        weights[present[0]] = 1.0
        total = rng.randrange(1, 120)
        got = list(mix_domains(domains, weights, total, seed=seed))
        expected = ref_near.mix_domains(domains, weights, total, seed=seed)
        if got != expected:
            raise mismatch("mix_domains differs from the reference", (domains, weights, total),
                        expected, got)
        if len(got) != total or got != sorted(got):
            raise AssertionError("mix_domains must return `total` indices in sorted order")
        for d in present:
            uses = Counter(i for i in got if domains[i] == d)
            if weights[d] == 0 and uses:
                raise AssertionError(f"domain {d!r} has weight 0 but was drawn")
            if uses and max(uses.values()) - min(uses.get(i, 0) for i, x in enumerate(domains)
                                                 if x == d) > 1:
                raise AssertionError(f"documents of {d!r} are used unevenly: {dict(uses)}")
    raises_value_error("mix_domains with a weight for a domain that has no documents",
                       lambda: mix_domains(["code"], {"code": 1.0, "prose": 1.0}, 3))


def check_run_pipeline(run_pipeline, seed: int) -> None:
    """Steps run in order, each on the survivors of the last; counts conserved; reasons counted."""
    rng = random.Random(seed)
    docs = [rng.randrange(1000) for _ in range(rng.randrange(0, 80))]
    moduli = [rng.randrange(2, 7) for _ in range(rng.randrange(1, 5))]
    calls = []

    def make(k: int, m: int):
        def verdicts(batch):
            calls.append((k, list(batch)))
            return [None if x % m else f"divisible by {m}" for x in batch]
        return f"step{k}", verdicts

    kept, report = run_pipeline(list(docs), [make(k, m) for k, m in enumerate(moduli)])
    survivors, expected_calls, expected_report = list(docs), [], []
    for k, m in enumerate(moduli):
        expected_calls.append((k, list(survivors)))
        removed = [x for x in survivors if x % m == 0]
        expected_report.append({"step": f"step{k}", "in": len(survivors),
                                "kept": len(survivors) - len(removed), "removed": len(removed),
                                "reasons": Counter({f"divisible by {m}": len(removed)})})
        survivors = [x for x in survivors if x % m]
    if calls != expected_calls:
        raise AssertionError("each step must run once, in order, on the survivors of the "
                             "steps before it")
    got_report = [dict(row, reasons=Counter(row.get("reasons", {}))) for row in report]
    if list(kept) != survivors or got_report != expected_report:
        raise mismatch("run_pipeline: survivors or report are wrong", (docs, moduli),
                    (survivors, expected_report), (kept, report))
