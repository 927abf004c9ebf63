"""Chapter 1's fast route: tensor shingling and densified one-permutation MinHash.

The shingles must be exactly the word k-grams (equal k-grams hash equal, different ones
differently); the signatures must estimate Jaccard similarity without bias, with every
bin filled; LSH on them must find the crawl's planted near duplicates.
"""
from __future__ import annotations

import math
import random
import re

import pytest
import torch

from tinygpt.curation import fastminhash, neardup
from tinygpt.curation.clean import normalize
from tinygpt.curation.crawl import generate_crawl

EDGE_TEXTS = ["", "   \n\t ", "one", "Two Words", "exactly five words right here",
              "four words only here", "supercalifragilistic expialidocious antidisestablishmentarianism "
              "words longer than eight bytes and sixteen bytes", "tabs\tand\nnew\rlines\x0bvertical\x0cfeed x",
              "naïve café déjà vu über straße 東京 タワー", "abcdefgh abcdefgi abcdefghabcdefgh abcdefghabcdefgi q"]


def _kgrams(text: str, k: int) -> list[str]:
    """The word k-grams in order, words split on ASCII whitespace, as the docstring says."""
    words = [w for w in re.split(r"[ \t\n\r\x0b\x0c]+", text.lower()) if w]
    if not words:
        return []
    return [" ".join(words[i:i + k]) for i in range(max(1, len(words) - k + 1))]


@pytest.mark.parametrize("k", [1, 3, 5])
def test_shingle_hashes_are_exactly_the_word_kgrams(k):
    # The edge texts come twice, followed by different texts: a short text's one shingle
    # must not depend on what comes after it.
    texts = (EDGE_TEXTS + [normalize(p.text) for p in generate_crawl(n_pages=300, seed=11).pages]
             + EDGE_TEXTS[::-1])
    hashes, owner = fastminhash.shingle_hashes(texts, k)
    assert hashes.dtype == owner.dtype == torch.int64 and hashes.shape == owner.shape
    assert bool((hashes >= 0).all()) and bool((hashes < fastminhash.EMPTY).all())
    seen: dict[str, int] = {}
    for i, text in enumerate(texts):
        grams, got = _kgrams(text, k), hashes[owner == i].tolist()
        assert len(got) == len(grams), (i, text[:80])
        for gram, h in zip(grams, got):
            assert seen.setdefault(gram, h) == h, f"{gram!r} hashed two ways"
    assert len(set(seen.values())) == len(seen), "two different k-grams share a hash"


def test_words_that_differ_only_in_later_chunks_hash_apart():
    # 676 words of 16 bytes that differ only in their 8th and 16th bytes: a hash that
    # carried only the top byte of the first chunk's product into the second chunk would
    # put them into at most 256 values.
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = [f"abcdefg{x}ijklmno{y}" for x in letters for y in letters]
    hashes, owner = fastminhash.shingle_hashes(words, k=1)
    assert torch.equal(owner, torch.arange(len(words)))
    assert len(set(hashes.tolist())) == len(words)


def test_shingle_sets_agree_with_the_graded_shingles_on_the_crawl():
    texts = [normalize(p.text) for p in generate_crawl(n_pages=200, seed=5).pages]
    hashes, owner = fastminhash.shingle_hashes(texts)
    for i, text in enumerate(texts):
        assert len(set(hashes[owner == i].tolist())) == len(neardup.shingles(text)), i


def test_seed_changes_the_hashes_and_the_same_seed_repeats_them():
    texts = EDGE_TEXTS[2:]
    a, _ = fastminhash.shingle_hashes(texts, seed=1)
    b, _ = fastminhash.shingle_hashes(texts, seed=1)
    c, _ = fastminhash.shingle_hashes(texts, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def _pairs_with_jaccard(rng: random.Random, n: int) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Random 62-bit shingle sets in pairs of known Jaccard, some far smaller than 128."""
    values, owners, truth = [], [], []
    for p in range(n):
        union = rng.randrange(5, 400)
        inter = rng.randrange(0, union + 1)
        pool = [rng.randrange(fastminhash.EMPTY) for _ in range(union)]
        split = rng.randrange(0, union - inter + 1)
        a = pool[:inter] + pool[inter:inter + split]
        b = pool[:inter] + pool[inter + split:]
        for doc, items in ((2 * p, a), (2 * p + 1, b)):
            values += items
            owners += [doc] * len(items)
        truth.append(inter / union)
    return torch.tensor(values), torch.tensor(owners), truth


@pytest.mark.parametrize("num_perm", [64, 128, 100])
def test_one_permutation_estimates_are_unbiased_and_fill_every_bin(num_perm):
    rng = random.Random(num_perm)
    values, owners, truth = _pairs_with_jaccard(rng, 400)
    sig = fastminhash.one_permutation_signatures(values, owners, 2 * len(truth) + 1, num_perm)
    assert sig.shape == (2 * len(truth) + 1, num_perm)
    has = torch.bincount(owners, minlength=sig.shape[0]) > 0
    assert not bool(has[-1]) and bool((sig[~has] == fastminhash.EMPTY).all()), \
        "a document without shingles must stay empty"
    assert not bool((sig[has] == fastminhash.EMPTY).any()), "densification left a bin empty"
    errors = [(sig[2 * p] == sig[2 * p + 1]).double().mean().item() - j for p, j in enumerate(truth)]
    mean = sum(errors) / len(errors)
    spread = math.sqrt(sum(j * (1 - j) for j in truth) / num_perm) / len(truth)
    assert abs(mean) < 4 * spread + 2e-3, f"mean error {mean:+.4f}"
    identical = values[owners == 0], owners[owners == 0]
    twice = fastminhash.one_permutation_signatures(torch.cat([identical[0]] * 2),
                                                   torch.tensor([0] * len(identical[0]) + [1] * len(identical[0])),
                                                   2, num_perm)
    assert torch.equal(twice[0], twice[1]), "equal sets must get equal signatures"


def test_lsh_on_one_permutation_signatures_finds_the_planted_near_duplicates():
    crawl = generate_crawl(n_pages=1500, seed=7)
    texts = [normalize(p.text) for p in crawl.pages]
    sig = fastminhash.signatures(texts, num_perm=128)
    candidates = neardup.lsh_candidates(sig, 16, 8)
    sets = [set(_kgrams(t, 5)) for t in texts]
    planted = {(min(a, b), max(a, b)) for a, b in
               {**crawl.truth.exact_duplicate_of, **crawl.truth.near_duplicate_of}.items()}
    similar = {(a, b) for a, b in planted
               if sets[a] | sets[b] and len(sets[a] & sets[b]) / len(sets[a] | sets[b]) >= 0.8}
    assert len(similar) > 50
    assert len(similar & candidates) / len(similar) >= 0.95


def test_signatures_do_not_depend_on_the_batch_size():
    texts = EDGE_TEXTS + [normalize(p.text) for p in generate_crawl(n_pages=200, seed=3).pages]
    whole = fastminhash.signatures(texts, num_perm=64, batch=len(texts))
    assert whole.shape == (len(texts), 64)
    for batch in (1, 7, 64):
        assert torch.equal(fastminhash.signatures(texts, num_perm=64, batch=batch), whole), batch
    assert fastminhash.signatures([], num_perm=64).shape == (0, 64)
    with pytest.raises(ValueError, match="batch"):
        fastminhash.signatures(texts, batch=0)


@pytest.mark.gpu
def test_the_gpu_gives_the_cpu_signatures():
    texts = [normalize(p.text) for p in generate_crawl(n_pages=300, seed=2).pages]
    assert torch.equal(fastminhash.signatures(texts, device="cuda").cpu(), fastminhash.signatures(texts))
