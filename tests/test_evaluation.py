"""Chapter 5's exported reference passes its own checks, and the metrics keep the
promises the report card relies on: a uniform model's perplexity is the vocabulary's
size, bits per byte is a hand computation, pass@k is its definition, bootstrap
intervals cover the truth at about their level, Bradley-Terry recovers planted
strengths, and the held-out facts are absent from the course corpus."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from tinygpt.checks import ch05 as checks
from tinygpt.checks.ch04.shared import chat_tokenizer
from tinygpt.evaluation import items, metrics, stats
from tinygpt.pretraining.config import GPTConfig
from conftest import reference_tests

REFERENCE = [
    (checks.check_token_nll, (metrics.token_nll,)),
    (checks.check_text_metrics, (metrics.text_metrics,)),
    (checks.check_choices, (metrics.choice_logprobs, metrics.pick_choice)),
    (checks.check_exact_match, (metrics.normalize_answer, metrics.exact_match)),
    (checks.check_pass_at_k, (metrics.pass_at_k,)),
    (checks.check_bootstrap_ci, (stats.bootstrap_ci,)),
    (checks.check_paired_bootstrap, (stats.paired_bootstrap,)),
    (checks.check_bradley_terry, (stats.bradley_terry,)),
    (checks.check_elo, (stats.elo,)),
    (checks.check_contamination, (stats.ngrams, stats.contamination)),
]

test_every_check_is_run_on_the_reference, test_reference_passes_its_checks = \
    reference_tests(REFERENCE, checks, range(12))


class _Fixed(torch.nn.Module):
    """Logits that do not depend on the input: ``row`` at every position."""

    def __init__(self, row: torch.Tensor, block: int = 8):
        super().__init__()
        self.config = GPTConfig(vocab_size=row.numel(), block_size=block, n_layer=1, n_head=1,
                                n_embd=8)
        self.row = torch.nn.Parameter(row)

    def forward(self, idx):
        return self.row.expand(*idx.shape, -1)


def test_a_uniform_model_has_the_vocabulary_as_perplexity():
    tok = chat_tokenizer()
    got = metrics.text_metrics(_Fixed(torch.zeros(tok.n_vocab)), tok, ["A river.", "Ünï 日本"])
    assert math.isclose(got["perplexity"], tok.n_vocab, rel_tol=1e-6)  # float32 log-softmax


def test_bits_per_byte_by_hand():
    tok = chat_tokenizer()
    logits = torch.full((tok.n_vocab,), -30.0)
    ids = tok.encode_ordinary("mill")
    logits[ids] = 0.0  # every id of "mill" equally likely, the rest never
    got = metrics.text_metrics(_Fixed(logits), tok, ["mill"])
    per_token = math.log(len(set(ids)))  # ln of the ids that share the mass (to 1e-12)
    assert got["tokens"] == len(ids) and got["bytes"] == 4
    assert math.isclose(got["bits_per_byte"], len(ids) * per_token / math.log(2) / 4, rel_tol=1e-6)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_is_the_share_of_k_subsets_with_a_success(n):
    for c, k in itertools.product(range(n + 1), range(1, n + 1)):
        subsets = list(itertools.combinations([True] * c + [False] * (n - c), k))
        assert math.isclose(metrics.pass_at_k(n, c, k), sum(map(any, subsets)) / len(subsets),
                            abs_tol=1e-12)


def test_pass_at_k_with_k_above_n_is_a_clear_error():
    with pytest.raises(ValueError, match="k <= n"):
        metrics.pass_at_k(3, 1, 4)


def test_bootstrap_intervals_cover_the_true_mean_at_about_their_level():
    # 400 samples of 60 Bernoulli(0.3) items: a 90 % interval should hold 0.3 about 360
    # times; the percentile bootstrap runs a little narrow at n = 60, hence the band.
    g = torch.Generator().manual_seed(0)
    hits = 0
    for trial in range(400):
        sample = (torch.rand(60, generator=g) < 0.3).double()
        _, low, high = stats.bootstrap_ci(sample, level=0.9, resamples=400, seed=trial)
        hits += low <= 0.3 <= high
    assert 0.83 <= hits / 400 <= 0.95, hits


def test_paired_bootstrap_is_narrower_than_two_separate_intervals():
    # Two models that share most of their per-item variation (hard items are hard for both).
    g = torch.Generator().manual_seed(1)
    difficulty = torch.rand(200, generator=g)
    a = (torch.rand(200, generator=g) * 0.3 + difficulty > 0.6).double()
    b = (torch.rand(200, generator=g) * 0.3 + difficulty > 0.65).double()
    paired = stats.paired_bootstrap(a, b, seed=0)
    _, a_low, a_high = stats.bootstrap_ci(a, seed=0)
    _, b_low, b_high = stats.bootstrap_ci(b, seed=1)
    separate = math.hypot(a_high - a_low, b_high - b_low)
    assert paired["high"] - paired["low"] < 0.5 * separate
    assert paired["low"] > 0 and paired["p_value"] < 0.05


def test_bradley_terry_recovers_planted_strengths():
    g = torch.Generator().manual_seed(2)
    planted = torch.tensor([-1.5, -0.5, 0.0, 0.7, 1.3], dtype=torch.float64)
    games = []
    for _ in range(6000):
        i, j = torch.randperm(5, generator=g)[:2].tolist()
        p = torch.sigmoid(planted[i] - planted[j]).item()
        games.append((i, j, float(torch.rand(1, generator=g).item() < p)))
    theta = stats.bradley_terry(games, 5)
    assert torch.allclose(theta, planted - planted.mean(), atol=0.12), theta
    assert theta.argsort().tolist() == [0, 1, 2, 3, 4]
    ratings = stats.elo(games, 5, k=8.0)
    assert ratings.argsort().tolist() == [0, 1, 2, 3, 4], ratings  # Elo ranks them too


def test_two_ties_weigh_as_one_win_and_one_loss():
    games = [(0, 1, 1.0), (1, 2, 1.0), (2, 0, 0.0), (0, 2, 1.0)]
    ties = stats.bradley_terry(games + [(1, 2, 0.5), (1, 2, 0.5)], 3)
    split = stats.bradley_terry(games + [(1, 2, 1.0), (1, 2, 0.0)], 3)
    assert torch.allclose(ties, split, atol=1e-9)


def test_contamination_finds_held_in_facts_and_no_held_out_ones_in_the_course_corpus():
    from tinygpt.corpus import course_corpus
    world = items.build_world()
    held_in = [f.sentence for f in world.training_facts()]
    held_out = [f.sentence for f in world.held_out_facts()]
    shares = stats.contamination(held_in + held_out, [course_corpus()])
    assert shares[:len(held_in)] == [1.0] * len(held_in)
    assert shares[len(held_in):] == [0.0] * len(held_out)
