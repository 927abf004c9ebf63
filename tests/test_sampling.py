"""Chapter 11's exported reference passes its own checks, and the sampler keeps the
promises the decode loop and the server rely on: a request's settings are checked
against OpenAI's ranges (an unknown one is refused), temperature tending to 0 becomes
argmax, a seeded request repeats itself whatever shares its batch, and the whole
pipeline runs on CUDA when there is one."""
from __future__ import annotations

import pytest
import torch

from tinygpt.checks import ch11 as checks
from tinygpt.engine.sampling import (SamplingBatch, SamplingParams, draw, min_p_filter, next_tokens,
                                     penalize, top_k_filter, top_p_filter)
from conftest import reference_tests

REFERENCE = [
    (checks.check_top_k, (top_k_filter,)),
    (checks.check_top_p, (top_p_filter,)),
    (checks.check_min_p, (min_p_filter,)),
    (checks.check_penalize, (penalize,)),
    (checks.check_draw, (draw,)),
    (checks.check_next_tokens, (next_tokens,)),
]

test_every_check_is_run_on_the_reference, test_reference_passes_its_checks = \
    reference_tests(REFERENCE, checks, range(8))


@pytest.mark.parametrize("bad", [
    {"temperature": -0.1}, {"temperature": 2.5}, {"temperature": float("nan")}, {"top_p": 0.0},
    {"top_p": 1.2}, {"top_k": -1}, {"top_k": 2.5}, {"min_p": 1.5}, {"repetition_penalty": 0.0},
    {"frequency_penalty": 3.0}, {"presence_penalty": -2.5}, {"seed": -1}, {"seed": True},
    {"logit_bias": {"5": 150}}, {"logit_bias": {"x": 1}}, {"logit_bias": {"-3": 1}},
    {"temprature": 0.5}, {"stream": True},
])
def test_bad_settings_are_refused_with_the_field_named(bad):
    with pytest.raises(ValueError) as err:
        SamplingParams.from_dict(bad)
    assert any(name in str(err.value) for name in (*bad, "logit_bias")), err.value


def test_openai_shaped_settings_are_read():
    p = SamplingParams.from_dict({"temperature": 0.7, "top_p": 0.9, "logit_bias": {"12": -100, "3": 5},
                                  "seed": 42, "frequency_penalty": 0.5})
    assert p.logit_bias == ((3, 5.0), (12, -100.0)) and p.seed == 42
    batch = SamplingBatch.build([p, SamplingParams()], vocab_size=20)
    assert batch.bias[0, 12] == -100 and batch.bias[1].abs().sum() == 0
    with pytest.raises(ValueError, match="vocabulary"):
        SamplingBatch.build([SamplingParams(logit_bias=((25, 1.0),))], vocab_size=20)


def test_a_small_temperature_is_argmax():
    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(0))
    batch = SamplingBatch.build([SamplingParams(temperature=1e-3, seed=i) for i in range(64)], 50)
    none = torch.zeros(64, 50, dtype=torch.bool), torch.zeros(64, 50, dtype=torch.long)
    top2 = logits.topk(2).values
    clear = top2[:, 0] - top2[:, 1] > 0.05  # a near tie still splits at temperature 1e-3
    assert clear.sum() > 40
    assert torch.equal(next_tokens(logits, batch, *none)[clear], logits.argmax(dim=-1)[clear])


def test_a_seeded_request_repeats_itself_under_any_batch():
    gen = torch.Generator().manual_seed(1)
    mine = SamplingParams(temperature=1.0, top_p=0.95, seed=1234)

    def run(others: int) -> list[int]:
        params = [mine] + [SamplingParams(temperature=1.5, top_k=5, seed=s) for s in range(others)]
        batch = SamplingBatch.build(params, 40)
        seen = torch.zeros(len(params), 40, dtype=torch.bool)
        counts = torch.zeros(len(params), 40, dtype=torch.long)
        logits = torch.randn(20, 40, generator=torch.Generator().manual_seed(9))
        out = []
        for step in range(20):
            rows = torch.cat([logits[step:step + 1], torch.randn(others, 40, generator=gen)])
            out.append(next_tokens(rows, batch, seen, counts)[0].item())
        return out
    assert run(0) == run(3) == run(7)


def test_unseeded_requests_differ():
    batch = SamplingBatch.build([SamplingParams(), SamplingParams()], 1000)
    logits = torch.zeros(2, 1000)
    none = torch.zeros(2, 1000, dtype=torch.bool), torch.zeros(2, 1000, dtype=torch.long)
    draws = torch.stack([next_tokens(logits, batch, *none) for _ in range(10)])
    assert not torch.equal(draws[:, 0], draws[:, 1])


@pytest.mark.gpu
def test_the_pipeline_on_cuda_equals_the_cpu_in_distribution():
    params = [SamplingParams(temperature=0.8, top_k=20, top_p=0.9, seed=s) for s in range(4)]
    batch = SamplingBatch.build(params, 64, device="cuda")
    logits = torch.randn(4, 64, device="cuda")
    none = torch.zeros(4, 64, dtype=torch.bool, device="cuda"), torch.zeros(4, 64, dtype=torch.long,
                                                                           device="cuda")
    tokens = next_tokens(logits, batch, *none)
    assert tokens.device.type == "cuda" and tokens.shape == (4,)
    again = next_tokens(logits, SamplingBatch.build(params, 64, device="cuda"), *none)
    assert torch.equal(tokens, again)
