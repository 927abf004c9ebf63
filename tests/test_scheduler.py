"""Chapter 12's scheduler: the exported reference passes its own checks, a request that can
never run is refused while the others finish unharmed, and a long run gives every block
back."""
from __future__ import annotations

import pytest

from tinygpt.checks.ch10 import small_model
from tinygpt.checks.ch12 import batching as checks
from tinygpt.checks.ch12.decode import toy_tokenizer
from tinygpt.engine.decode import generate
from tinygpt.engine.sampling import SamplingParams
from tinygpt.engine.scheduler import Request, Scheduler
from conftest import reference_tests

REFERENCE = [
    (checks.check_submit, (Scheduler,)),
    (checks.check_admission, (Scheduler,)),
    (checks.check_continuous, (Scheduler,)),
]

test_every_check_is_run_on_the_reference, test_reference_passes_its_checks = \
    reference_tests(REFERENCE, checks, range(6))


def test_a_request_that_cannot_run_is_refused_and_the_others_finish():
    model, tok = small_model(seed=6), toy_tokenizer()
    s = Scheduler(model, tok, n_blocks=6, block_size=4, max_batch_tokens=12)
    good = [Request("a", [1, 2, 3], SamplingParams(temperature=0.7, seed=1), max_tokens=6),
            Request("b", [4], max_tokens=9)]
    s.submit(good[0])
    with pytest.raises(ValueError, match="needs 7 blocks"):
        s.submit(Request("huge", [1] * 20, max_tokens=8))
    s.submit(good[1])
    events = {r.id: [] for r in good}
    while not s.idle:
        for rid, event in s.step():
            events[rid].append(event)
    for r in good:
        assert events[r.id] == list(generate(model, tok, r.prompt, r.params, r.max_tokens))


def test_sixty_requests_through_a_small_cache_give_every_block_back():
    model, tok = small_model(seed=8), toy_tokenizer()
    s = Scheduler(model, tok, n_blocks=24, block_size=2, max_batch_tokens=16)
    for i in range(60):
        s.submit(Request(f"r{i}", [i % 64, (3 * i) % 64], max_tokens=1 + i % 7))
    most = 0
    while not s.idle:
        s.step()
        most = max(most, len(s.running))
    assert s.cache.allocator.n_free == 24 and not s.cache.tables and most > 1
