"""Chapter 10's exported reference passes its own checks, and prefill keeps the promises the
decode loop and the server rely on: a grouped-query cache stores only the kv heads, a
mixture-of-experts model is served like a dense one, greedy generation through the cache
picks the tokens that recomputing everything picks, bad requests are refused with the
reason named, and the same code runs on CUDA in bf16 with fused attention."""
from __future__ import annotations

import pytest
import torch

from tinygpt.checks import ch10 as checks
from tinygpt.checks.ch10 import small_model
from tinygpt.engine.kvcache import KVCache, cache_mask, cached_attention
from tinygpt.engine.prefill import (decode_step, forward_cached, left_pad, prefill,
                                    time_to_first_token)
from conftest import reference_tests

REFERENCE = [
    (checks.check_kv_cache, (KVCache,)),
    (checks.check_cache_mask, (cache_mask,)),
    (checks.check_cached_attention, (cached_attention,)),
    (checks.check_left_pad, (left_pad,)),
    (checks.check_forward_cached, (forward_cached,)),
    (checks.check_prefill, (prefill,)),
    (checks.check_decode_step, (decode_step,)),
]

test_every_check_is_run_on_the_reference, test_reference_passes_its_checks = \
    reference_tests(REFERENCE, checks, range(6))


def test_a_grouped_query_cache_stores_the_kv_heads_only():
    model = small_model(n_head=4, n_kv_head=1, n_embd=32)
    cache = KVCache.for_model(model, batch=3, max_len=10)
    assert cache.keys.shape == (2, 3, 1, 10, 8)
    assert cache.bytes_per_token() == 2 * 2 * 1 * 8 * 4      # k and v, 2 layers, 1 head of 8, fp32
    full = KVCache.for_model(small_model(n_head=4, n_kv_head=4, n_embd=32), batch=3, max_len=10)
    assert full.bytes_per_token() == 4 * cache.bytes_per_token()


@pytest.mark.parametrize("sdpa", [True, False])
def test_greedy_generation_through_the_cache_picks_what_recomputing_picks(sdpa):
    model = small_model(seed=3, n_expert=4, use_sdpa=sdpa)
    prompts = [[5, 9, 2, 7, 7, 1], [3], [8, 8, 4]]
    done = prefill(model, prompts, max_new_tokens=12)
    cached, recomputed = [list(p) for p in prompts], [list(p) for p in prompts]
    logits = done.logits
    for _ in range(12):
        tokens = logits.argmax(dim=-1)
        for row, token in enumerate(tokens.tolist()):
            cached[row].append(token)
        logits = decode_step(model, tokens, done.cache)
        with torch.no_grad():
            for row in recomputed:
                row.append(model(torch.tensor([row]))[0, -1].argmax().item())
    assert cached == recomputed
    assert done.cache.end == done.cache.max_len == 6 + 12


@pytest.mark.parametrize("prompts,max_new,reason", [
    ([[1] * 32], 1, "at most 31"), ([[1, 2], []], 0, "prompt 1"), ([[1, 64]], 0, "outside"),
    ([], 0, "non-empty"), ([[1]], -2, "max_new_tokens"),
])
def test_a_bad_request_is_refused_with_the_reason(prompts, max_new, reason):
    with pytest.raises(ValueError, match=reason):
        prefill(small_model(), prompts, max_new_tokens=max_new)


def test_a_full_cache_refuses_the_next_token():
    model = small_model()
    done = prefill(model, [[1, 2]], max_new_tokens=1)
    decode_step(model, torch.tensor([3]), done.cache)
    with pytest.raises(ValueError, match="do not fit"):
        decode_step(model, torch.tensor([4]), done.cache)


def test_time_to_first_token_is_measured_per_prompt():
    times = time_to_first_token(small_model(), [[1] * 4, [2] * 20], repeats=2)
    assert len(times) == 2 and all(0 < t < 10 for t in times)


@pytest.mark.gpu
@pytest.mark.parametrize("sdpa", [True, False])
def test_prefill_on_cuda_in_bf16_matches_the_cpu(sdpa):
    cpu = small_model(seed=5, use_sdpa=sdpa)
    gpu = small_model(seed=5, use_sdpa=sdpa).cuda()
    prompts = [[5, 9, 2, 7, 7, 1], [3, 4]]
    want = prefill(cpu, prompts).logits
    with torch.autocast("cuda", dtype=torch.bfloat16):
        done = prefill(gpu, prompts, max_new_tokens=1)
        step = decode_step(gpu, done.logits.argmax(dim=-1), done.cache)
    assert done.cache.keys.is_cuda and step.is_cuda
    assert torch.allclose(done.logits.float().cpu(), want, atol=5e-2)
