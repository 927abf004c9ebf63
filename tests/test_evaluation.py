"""Chapter 5's exported reference passes its own checks, and the metrics keep the
promises the report card relies on: a uniform model's perplexity is the vocabulary's
size, bits per byte is a hand computation, pass@k is its definition."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from tinygpt.checks import ch05 as checks
from tinygpt.checks.ch04.shared import chat_tokenizer
from tinygpt.evaluation import metrics
from tinygpt.pretraining.config import GPTConfig
from conftest import reference_tests

REFERENCE = [
    (checks.check_token_nll, (metrics.token_nll,)),
    (checks.check_text_metrics, (metrics.text_metrics,)),
    (checks.check_choices, (metrics.choice_logprobs, metrics.pick_choice)),
    (checks.check_exact_match, (metrics.normalize_answer, metrics.exact_match)),
    (checks.check_pass_at_k, (metrics.pass_at_k,)),
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
