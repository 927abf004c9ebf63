"""Chapter 12's paged KV cache (notebook 2): the exported reference passes its own checks,
a random workload of requests joining, growing and finishing leaks no block, greedy
generation over the paged cache picks the tokens the dense cache of chapter 10 picks,
the memory count is what the block arithmetic says, and the view runs on CUDA in bf16."""
from __future__ import annotations

import math
import random

import pytest
import torch

from tinygpt.checks.ch10 import small_model
from tinygpt.checks.ch12 import paged as checks
from tinygpt.engine.paged import BlockAllocator, PagedBatch, PagedKVCache, memory_bytes
from tinygpt.engine.prefill import decode_step, forward_cached, prefill
from conftest import reference_tests

REFERENCE = [
    (checks.check_block_allocator, (BlockAllocator,)),
    (checks.check_paged_cache, (PagedKVCache,)),
    (checks.check_paged_batch, (PagedBatch,)),
]

test_every_check_is_run_on_the_reference, test_reference_passes_its_checks = \
    reference_tests(REFERENCE, checks, range(6))


def test_every_block_returns_to_the_free_list_after_a_random_workload():
    rng = random.Random(0)
    cache = PagedKVCache(n_layer=1, n_blocks=40, block_size=4, n_kv_head=1, head_dim=2)
    running, refused, finished = {}, 0, 0
    for step in range(400):
        if rng.random() < 0.3:  # a request arrives with a prompt
            rid = f"r{step}"
            try:
                cache.reserve(rid, rng.randrange(1, 30))
            except ValueError:
                refused += 1
                assert rid not in cache.tables
            else:
                running[rid] = rng.randrange(1, 40)  # tokens it will still generate
        for rid in list(running):
            room = len(cache.tables[rid]) * 4 - cache.lengths[rid]
            try:
                cache.reserve(rid, 1)
            except ValueError:  # the pool is full: preempt this request
                cache.release(rid)
                del running[rid]
                continue
            view = cache.view([rid])
            assert view.max_len - view.end == (room or 4)  # a new block only when full
            view.advance(1)
            running[rid] -= 1
            if not running[rid]:
                cache.release(rid)
                del running[rid]
                finished += 1
        held = sum(len(t) for t in cache.tables.values())
        assert cache.allocator.n_free + held == 40
        owned = [b for t in cache.tables.values() for b in t]
        assert len(set(owned)) == len(owned)  # no block is in two tables
        assert all(math.ceil(cache.lengths[r] / 4) <= len(t) for r, t in cache.tables.items())
    for rid in list(running):
        cache.release(rid)
    assert finished and refused and cache.allocator.n_free == 40 and not cache.tables
    assert sorted(cache.allocator.allocate(40)) == list(range(40))


def test_greedy_generation_over_pages_picks_what_the_dense_cache_picks():
    model = small_model(seed=3, n_expert=4)
    prompts = {"x": [5, 9, 2, 7, 7, 1], "y": [3], "z": [8, 8, 4]}
    dense = prefill(model, list(prompts.values()), max_new_tokens=10)
    cache = PagedKVCache.for_model(model, n_blocks=16, block_size=3)
    paged_logits = []
    with torch.no_grad():
        for rid, prompt in prompts.items():
            cache.reserve(rid, len(prompt) + 10)
            paged_logits.append(forward_cached(model, torch.tensor([prompt]), cache.view([rid]), last=True)[0, -1])
    logits, paged = dense.logits, torch.stack(paged_logits)
    view = cache.view(list(prompts))
    for _ in range(10):
        tokens = logits.argmax(dim=-1)
        assert torch.equal(tokens, paged.argmax(dim=-1))
        logits = decode_step(model, tokens, dense.cache)
        paged = decode_step(model, tokens, view)
        torch.testing.assert_close(paged, logits, atol=1e-4, rtol=1e-4)
    assert cache.lengths == {"x": 16, "y": 11, "z": 13}
    for rid in prompts:
        cache.release(rid)
    assert cache.allocator.n_free == 16


def test_a_bad_view_or_write_is_refused_with_the_reason():
    cache = PagedKVCache(n_layer=1, n_blocks=2, block_size=2, n_kv_head=1, head_dim=2)
    cache.reserve("a", 3)
    with pytest.raises(ValueError, match="no request 'b'"):
        cache.view(["a", "b"])
    with pytest.raises(ValueError, match="2 blocks asked for, 0 of 2"):
        cache.reserve("b", 3)
    with pytest.raises(ValueError, match="do not fit"):
        cache.view(["a"]).update(0, torch.zeros(1, 1, 5, 2), torch.zeros(1, 1, 5, 2))
    with pytest.raises(ValueError, match="unknown request"):
        cache.release("b")
    with pytest.raises(ValueError, match="not allocated"):
        cache.allocator.free([0, 0] if 0 not in cache.tables["a"] else [5])


def test_memory_is_counted_in_whole_blocks():
    use = memory_bytes([1, 16, 17, 100], max_len=128, block_size=16, bytes_per_token=10)
    assert use == {"dense": 4 * 128 * 10, "paged": (1 + 1 + 2 + 7) * 16 * 10, "tokens": 134 * 10}
    assert memory_bytes([5], max_len=5, block_size=1, bytes_per_token=3)["paged"] == 15
    with pytest.raises(ValueError):
        memory_bytes([9], max_len=8, block_size=4, bytes_per_token=1)


@pytest.mark.gpu
def test_the_paged_view_runs_on_cuda_in_bf16():
    model = small_model(seed=1).to("cuda", torch.bfloat16)
    prompts = {"a": [1, 2, 3, 4, 5, 6, 7], "b": [8, 9]}
    cache = PagedKVCache.for_model(model, n_blocks=12, block_size=2)
    assert cache.keys.device.type == "cuda" and cache.keys.dtype == torch.bfloat16
    with torch.no_grad():
        for rid, prompt in prompts.items():
            cache.reserve(rid, len(prompt) + 3)
            forward_cached(model, torch.tensor([prompt], device="cuda"), cache.view([rid]))
        dense = prefill(model, list(prompts.values()), max_new_tokens=3)
        view = cache.view(list(prompts))
        tokens = torch.tensor([3, 4], device="cuda")
        for _ in range(3):
            paged = decode_step(model, tokens, view)
            logits = decode_step(model, tokens, dense.cache)
            torch.testing.assert_close(paged.float(), logits.float(), atol=5e-2, rtol=5e-2)
    assert cache.lengths == {"a": 10, "b": 5}


def test_block_tables_draws_the_pool_and_each_table():
    import matplotlib
    matplotlib.use("Agg")
    from tinygpt.plots import block_tables
    fig = block_tables({"A": [0, 2, 5], "B": [1, 4]}, block_size=4, n_blocks=8, lengths={"A": 10, "B": 6})
    ax = fig.axes[0]
    assert "(3 free)" in ax.get_title()
    assert len(ax.patches) == 8 + 2 * 5 + 5  # the pool, its owned blocks (pale, used), the tables
