"""Chapter 12's decode loop: the exported reference passes its own checks, a seeded request
streams the same answer twice, the stream never shows half a character, and bad
requests are refused with the reason named."""
from __future__ import annotations

import pytest
import torch

from tinygpt.checks.ch10 import small_model
from tinygpt.checks.ch12 import decode as checks
from tinygpt.checks.ch12.decode import toy_tokenizer
from tinygpt.engine.decode import Event, StopMatcher, generate
from tinygpt.engine.sampling import SamplingParams
from conftest import reference_tests

REFERENCE = [
    (checks.check_stop_matcher, (StopMatcher,)),
    (checks.check_generate, (generate,)),
]

test_every_check_is_run_on_the_reference, test_reference_passes_its_checks = \
    reference_tests(REFERENCE, checks, range(8))


def test_a_seeded_request_streams_the_same_answer_twice():
    model, tok = small_model(seed=4), toy_tokenizer()
    params = SamplingParams(temperature=1.0, top_p=0.9, seed=11)
    first, again = (list(generate(model, tok, [3, 1, 4], params, max_tokens=20)) for _ in range(2))
    assert first == again and len(first) == 20


def test_the_stream_never_shows_half_a_character():
    model, tok = small_model(seed=2), toy_tokenizer()
    for seed in range(6):
        events = list(generate(model, tok, [0, 2, 1], SamplingParams(temperature=1.5, seed=seed),
                               max_tokens=24))
        whole = tok.decode([e.token for e in events if e.token is not None])
        assert "".join(e.text for e in events) == whole   # no half character sent as U+FFFD


@pytest.mark.parametrize("kwargs,reason", [
    ({"max_tokens": 0}, "max_tokens"), ({"stop": ["a"] * 5}, "stop"), ({"max_tokens": 40}, "at most"),
])
def test_a_bad_request_is_refused_with_the_reason(kwargs, reason):
    with pytest.raises(ValueError, match=reason):
        generate(small_model(), toy_tokenizer(), [1, 2], **{"max_tokens": 4, **kwargs})


def test_end_of_text_first_is_an_empty_answer():
    model, tok = small_model(seed=1), toy_tokenizer()
    first = next(iter(generate(model, tok, [7, 7], max_tokens=3))).token
    assert list(generate(model, tok, [7, 7], max_tokens=3, eos=first)) == [Event(None, "", "stop")]


@pytest.mark.gpu
def test_generate_on_cuda_in_bf16():
    model, tok = small_model(seed=3).cuda(), toy_tokenizer()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        events = list(generate(model, tok, [1, 2, 3], max_tokens=8))
    assert len(events) == 8 and events[-1].finish_reason == "length"
