"""Every check of chapter 12's paged cache (notebook 2) rejects a plausible wrong answer
(a test must be able to fail)."""
from __future__ import annotations

import heapq
import math

import torch

from tinygpt.checks.ch12 import paged as checks
from tinygpt.engine import paged as pg
from conftest import mutant_tests


class _TrustingAllocator(pg.BlockAllocator):  # free takes any id back: double frees grow the pool
    def free(self, blocks):
        for block in blocks:
            self._used.discard(block)
            heapq.heappush(self._free, block)


class _PartialAllocator(pg.BlockAllocator):  # a refused allocate keeps what it took
    def allocate(self, n):
        if n > self.n_free:
            self._used.update(heapq.heappop(self._free) for _ in range(self.n_free))
        return super().allocate(n)


class _EagerFree(pg.BlockAllocator):  # frees the good ids before finding a bad one
    def free(self, blocks):
        for block in blocks:
            super().free([block])


class _ReserveForgetsLength(pg.PagedKVCache):  # ceil(n_tokens / size) more blocks every time
    def reserve(self, rid, n_tokens):
        if type(n_tokens) is not int or n_tokens < 0:
            raise ValueError("n_tokens")
        blocks = self.allocator.allocate(math.ceil(n_tokens / self.block_size))
        self.tables[rid] = self.tables.get(rid, []) + blocks
        self.lengths.setdefault(rid, 0)


class _FloorReserve(pg.PagedKVCache):  # rounds the blocks down: the last tokens have no slot
    def reserve(self, rid, n_tokens):
        if type(n_tokens) is not int or n_tokens < 0:
            raise ValueError("n_tokens")
        table = self.tables.get(rid, [])
        needed = (self.lengths.get(rid, 0) + n_tokens) // self.block_size - len(table)
        self.tables[rid] = table + self.allocator.allocate(max(needed, 0))
        self.lengths.setdefault(rid, 0)


class _LeakyRelease(pg.PagedKVCache):  # the last, partly filled, block is never given back
    def release(self, rid):
        if rid not in self.tables:
            raise ValueError("unknown")
        self.allocator.free(self.tables.pop(rid)[:-1])
        del self.lengths[rid]


class _GreedyReserve(pg.PagedKVCache):  # takes what is free before finding it is not enough
    def reserve(self, rid, n_tokens):
        table = self.tables.setdefault(rid, [])
        self.lengths.setdefault(rid, 0)
        needed = math.ceil((self.lengths[rid] + n_tokens) / self.block_size) - len(table)
        if needed > self.allocator.n_free:
            table += self.allocator.allocate(self.allocator.n_free)
        super().reserve(rid, n_tokens)


class _BlockPlusOffset(pg.PagedBatch):  # slot = block + offset: the block not scaled by its size
    def _slots(self, positions):
        return self.tables.gather(1, positions // self.cache.block_size) + positions % self.cache.block_size


class _StaleView(pg.PagedBatch):  # advance counts in the cache but not in the view
    def advance(self, t):
        if not 0 <= t <= self.room:
            raise ValueError("room")
        for rid in self.rids:
            self.cache.lengths[rid] += t


class _MostRoom(pg.PagedBatch):  # max_len from the row with the most room, and no room check
    def __init__(self, cache, rids):
        super().__init__(cache, rids)
        self.room = max(len(cache.tables[r]) * cache.block_size - cache.lengths[r] for r in rids)


class _GatherBeforeWrite(pg.PagedBatch):  # returns the keys without the new ones in place
    def update(self, layer, k, v):
        t = k.shape[2]
        before = (self.cache.keys[layer].clone(), self.cache.values[layer].clone())
        super().update(layer, k, v)
        now = (self.cache.keys[layer].clone(), self.cache.values[layer].clone())
        self.cache.keys[layer], self.cache.values[layer] = before
        keys, values = super().update(layer, torch.zeros_like(k), torch.zeros_like(v))
        self.cache.keys[layer], self.cache.values[layer] = now
        return keys, values


class _RightAligned(pg.PagedBatch):  # rows start at slot 0: right padding
    def __init__(self, cache, rids):
        super().__init__(cache, rids)
        self.starts = torch.zeros_like(self.starts)


MUTANTS = [
    (checks.check_block_allocator, (_TrustingAllocator,)),
    (checks.check_block_allocator, (_PartialAllocator,)),
    (checks.check_block_allocator, (_EagerFree,)),
    (checks.check_paged_cache, (_ReserveForgetsLength,)),
    (checks.check_paged_cache, (_FloorReserve,)),
    (checks.check_paged_cache, (_LeakyRelease,)),
    (checks.check_paged_cache, (_GreedyReserve,)),
    (checks.check_paged_batch, (_BlockPlusOffset,)),
    (checks.check_paged_batch, (_StaleView,)),
    (checks.check_paged_batch, (_MostRoom,)),
    (checks.check_paged_batch, (_GatherBeforeWrite,)),
    (checks.check_paged_batch, (_RightAligned,)),
]

(test_check_rejects_a_wrong_answer, test_every_check_has_a_mutant,
 test_stubs_fail_every_check) = mutant_tests(MUTANTS, checks)
