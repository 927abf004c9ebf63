"""Checks for chapter 12, notebook 2: the block allocator, block tables and the paged view.

The oracles are written here: the allocator against a set of allocated ids; block tables
against ``ceil(tokens / block_size)`` per request and a count of the pool; and the view
against a pool of blocks laid out here (random, scattered block tables) and read back
with loops, and against chapter 3's uncached ``GPT.forward`` of each request alone (and
the rotated keys and values that the forward computes, read by hooks, as chapter 10's
checks do). Requests are prefilled one at a time, sometimes in two chunks, and then
decoded together over views of random subsets in random order, so rows have different
lengths and blocks of different requests interleave. Checks print nothing.

The view's check builds its own pool (a stand-in with ``keys``, ``values``, ``tables``,
``lengths`` and ``block_size``), so it needs nothing else from the notebook. Imports:
chapter 10's reference ``forward_cached`` and its checks' models, nothing later.
"""
from __future__ import annotations

import math
import random

import torch

from tinygpt.checks.ch10 import TOLERANCE, _alone, _keys_values, _random_model, zeros_of_shape
from tinygpt.checks.common import mismatch, raises_value_error, written_here
from tinygpt.engine.prefill import forward_cached

__all__ = ["written_here", "check_block_allocator", "check_paged_cache", "check_paged_batch"]


def _works(what: str, call):
    """``call()``, where refusing would be wrong: a ValueError becomes the finding."""
    try:
        return call()
    except ValueError as err:
        raise AssertionError(f"{what} must succeed, it raised ValueError: {err}") from None


def check_block_allocator(cls, seed: int = 0) -> None:
    """Random allocate and free against a set of allocated ids: no block handed out twice,
    refusals (too few free, double free, unknown ids, duplicates) change nothing, and at
    the end every block is back on the free list."""
    rng = random.Random(seed)
    for bad in (0, -1):
        raises_value_error(f"BlockAllocator({bad})", lambda: cls(bad))
    for _ in range(4):
        n = rng.randrange(1, 17)
        pool, used = cls(n), set()
        if pool.n_free != n:
            raise mismatch(f"BlockAllocator({n}).n_free", n, n, pool.n_free)
        for _ in range(40):
            if rng.random() < 0.55:
                k = rng.randrange(0, n - len(used) + 3)
                if k > n - len(used):
                    raises_value_error(f"allocate({k}) with {n - len(used)} of {n} free",
                                       lambda: pool.allocate(k))
                else:
                    got = _works(f"allocate({k}) with {n - len(used)} of {n} free",
                                 lambda: pool.allocate(k))
                    if not isinstance(got, list) or len(got) != k or len(set(got)) != k or \
                            not all(type(b) is int and 0 <= b < n and b not in used for b in got):
                        raise mismatch(f"allocate({k}) must return {k} distinct free ids of "
                                       f"range({n})", sorted(used), f"{k} ids not in {sorted(used)}", got)
                    used.update(got)
            elif used and rng.random() < 0.7:
                some = rng.sample(sorted(used), rng.randrange(1, len(used) + 1))
                _works(f"free({some}) with {sorted(used)} allocated", lambda: pool.free(list(some)))
                used.difference_update(some)
            else:
                free = sorted(set(range(n)) - used)
                bad_lists = [[n], [-1]] + ([[rng.choice(free)]] if free else [])
                if used:
                    held = rng.choice(sorted(used))
                    bad_lists += [[held, held], [held] + bad_lists[rng.randrange(len(bad_lists))]]
                for bad in bad_lists:
                    raises_value_error(f"free({bad}) with {sorted(used)} allocated",
                                       lambda: pool.free(list(bad)))
            if pool.n_free != n - len(used):
                raise mismatch("n_free after a sequence of allocate and free (a refused call "
                               "must change nothing)", sorted(used), n - len(used), pool.n_free)
        _works(f"free({sorted(used)}) of every allocated block", lambda: pool.free(sorted(used)))
        everything = _works(f"allocate({n}) with every block free", lambda: pool.allocate(n))
        if sorted(everything) != list(range(n)):
            raise mismatch("once every block is freed, allocate(n_blocks) must return them "
                           "all (a block leaked or was lost)", n, list(range(n)), sorted(everything))
        raises_value_error("allocate(1) on an empty pool", lambda: pool.allocate(1))
        pool.free(everything)
        if pool.n_free != n:
            raise mismatch("n_free after freeing every block", n, n, pool.n_free)


def check_paged_cache(cls, seed: int = 0) -> None:
    """Shapes and zeros; ``reserve`` grows a table by whole blocks only when its tokens need
    them (never moving a block, never sharing one between requests), a reserve that does
    not fit allocates nothing; ``release`` returns every block; no leaks at the end."""
    rng = random.Random(seed)
    for _ in range(4):
        n_layer, n_blocks, size = rng.randrange(1, 4), rng.randrange(2, 13), rng.randrange(1, 6)
        heads, dim = rng.randrange(1, 3), rng.choice([2, 4])
        shape = (n_layer, n_blocks, size, heads, dim)
        cache = cls(*shape)
        zeros_of_shape(cache, shape, "PagedKVCache", "(n_layer, n_blocks, block_size, n_kv_head, head_dim)")
        if cache.tables != {} or cache.lengths != {} or cache.allocator.n_free != n_blocks:
            raise mismatch("a new PagedKVCache holds no requests and every block is free",
                           shape, ({}, {}, n_blocks),
                           (cache.tables, cache.lengths, cache.allocator.n_free))
        if cls(1, 1, 1, 1, 1, dtype=torch.float64).keys.dtype != torch.float64:
            raise AssertionError("PagedKVCache(..., dtype=torch.float64) must store float64")
        for i in range(5):
            bad = list(shape)
            bad[i] = 0
            raises_value_error(f"PagedKVCache{tuple(bad)}", lambda: cls(*bad))
        tables, lengths = {}, {}
        for _ in range(30):
            rid = rng.choice(["a", "b", "c", 7, ("d", 1)])
            action = rng.random()
            if action < 0.6:
                n_tokens = rng.randrange(0, 2 * size + 3)
                need = math.ceil((lengths.get(rid, 0) + n_tokens) / size) - len(tables.get(rid, []))
                free = n_blocks - sum(map(len, tables.values()))
                if need > free:
                    raises_value_error(f"reserve({rid!r}, {n_tokens}) needing {need} blocks with "
                                       f"{free} free", lambda: cache.reserve(rid, n_tokens))
                else:
                    before = list(tables.get(rid, []))
                    _works(f"reserve({rid!r}, {n_tokens}) needing {need} blocks with {free} free",
                           lambda: cache.reserve(rid, n_tokens))
                    got = cache.tables.get(rid)
                    want_len = len(before) + max(need, 0)
                    others = {b for r, t in cache.tables.items() if r != rid for b in t}
                    if not isinstance(got, list) or len(got) != want_len or got[:len(before)] != before \
                            or len(set(got)) != len(got) or set(got) & others:
                        raise mismatch(f"reserve({rid!r}, {n_tokens}) with {lengths.get(rid, 0)} "
                                       f"tokens held, block_size {size}: the table must grow to "
                                       f"{want_len} blocks, keep its blocks, share none",
                                       before, f"{before} + {max(need, 0)} new", got)
                    tables[rid] = list(got)
                    lengths.setdefault(rid, 0)
                    if cache.lengths.get(rid) != lengths[rid]:
                        raise mismatch(f"reserve must not change the tokens held ({rid!r})",
                                       rid, lengths[rid], cache.lengths.get(rid))
            elif action < 0.8 and rid in tables:
                room = len(tables[rid]) * size - lengths[rid]
                lengths[rid] += rng.randrange(0, room + 1)  # the view's advance, done here
                cache.lengths[rid] = lengths[rid]
            elif rid in tables:
                _works(f"release({rid!r})", lambda: cache.release(rid))
                del tables[rid], lengths[rid]
                if rid in cache.tables or rid in cache.lengths:
                    raise AssertionError(f"release({rid!r}) must forget the request")
            else:
                raises_value_error(f"release({rid!r}) of an unknown request",
                                   lambda: cache.release(rid))
                raises_value_error(f"reserve({rid!r}, -1)", lambda: cache.reserve(rid, -1))
            used = sum(map(len, tables.values()))
            if cache.allocator.n_free != n_blocks - used or set(cache.tables) != set(tables):
                raise mismatch("after reserve and release, the free blocks are those no table "
                               "holds (a refused reserve allocates nothing, a release frees all)",
                               tables, (n_blocks - used, sorted(map(repr, tables))),
                               (cache.allocator.n_free, sorted(map(repr, cache.tables))))
        for rid in list(tables):
            cache.release(rid)
        if cache.allocator.n_free != n_blocks or cache.tables or cache.lengths:
            raise mismatch("every block returns to the free list once all requests are released",
                           n_blocks, n_blocks, cache.allocator.n_free)


class _Pool:
    """A paged cache laid out here: scattered blocks, as a busy server's pool would be."""

    def __init__(self, model, rng: random.Random, size: int, demands: dict):
        c = model.config
        n_blocks = sum(math.ceil(n / size) + 1 for n in demands.values()) + rng.randrange(3)
        shape = (c.n_layer, n_blocks, size, c.kv_heads, c.head_dim)
        self.keys, self.values = torch.randn(shape), torch.randn(shape)  # stale data from before
        self.block_size = size
        order = rng.sample(range(n_blocks), n_blocks)
        self.tables, self.lengths = {}, {}
        for rid, n in demands.items():
            count = math.ceil(n / size) + rng.randrange(2)
            self.tables[rid], order = order[:count], order[count:]
            self.lengths[rid] = 0

    def room(self, rid) -> int:
        return len(self.tables[rid]) * self.block_size - self.lengths[rid]

    def gather(self, which: torch.Tensor, layer: int, rid) -> torch.Tensor:
        """Request ``rid``'s entries (n_kv_head, length, head_dim), a slot at a time."""
        size = self.block_size
        rows = [which[layer, self.tables[rid][p // size], p % size] for p in range(self.lengths[rid])]
        return torch.stack(rows, dim=1) if rows else which[layer, 0, :0].transpose(0, 1)


def _check_view_fields(what: str, view, pool: _Pool, rids: list) -> None:
    lengths = [pool.lengths[r] for r in rids]
    end = max(lengths)
    want = (len(rids), end, [end - n for n in lengths], end + min(pool.room(r) for r in rids))
    starts = getattr(view, "starts", None)
    got = (getattr(view, "batch", None), getattr(view, "end", None),
           starts.tolist() if isinstance(starts, torch.Tensor) else starts, getattr(view, "max_len", None))
    if got != want or not isinstance(starts, torch.Tensor) or starts.dtype != torch.long:
        raise mismatch(f"{what}: (batch, end, starts, max_len) of a view over requests with "
                       f"lengths {lengths} and room {[pool.room(r) for r in rids]}", rids, want, got)


def _check_update(cls, rng: random.Random, g: torch.Generator) -> None:
    """``update`` on random data against the pool read back with loops; ``advance``."""
    model = _random_model(rng)
    c, size = model.config, rng.randrange(1, 6)
    rids = list(range(rng.randrange(1, 5)))
    pool = _Pool(model, rng, size, {r: rng.randrange(1, 12) for r in rids})
    for r in rids:
        pool.lengths[r] = rng.randrange(0, pool.room(r))  # every row keeps room for a token
    rows = rng.sample(rids, rng.randrange(1, len(rids) + 1))
    view = cls(pool, list(rows))
    _check_view_fields("PagedBatch", view, pool, rows)
    t = rng.randrange(1, min(pool.room(r) for r in rows) + 1)
    end = max(pool.lengths[r] for r in rows)
    before = {r: pool.lengths[r] for r in rows}
    for layer in rng.sample(range(c.n_layer), c.n_layer):
        k, v = (torch.randn(len(rows), c.kv_heads, t, c.head_dim, generator=g) for _ in range(2))
        olds = {(r, w): pool.gather(which, layer, r)
                for r in rows for w, which in (("k", pool.keys), ("v", pool.values))}
        got = view.update(layer, k, v)
        if not isinstance(got, tuple) or len(got) != 2 or any(
                tuple(x.shape) != (len(rows), c.kv_heads, end + t, c.head_dim) for x in got):
            raise mismatch(f"update({layer}, k, v) of {t} positions must return keys and values "
                           "(batch, n_kv_head, end + t, head_dim)", [before[r] for r in rows],
                           (len(rows), c.kv_heads, end + t, c.head_dim),
                           [tuple(getattr(x, "shape", ())) for x in got] if isinstance(got, tuple) else got)
        for b, r in enumerate(rows):
            if pool.lengths[r] != before[r]:
                raise AssertionError("update must not change the lengths: advance does, once "
                                     "every layer has written")
            pool.lengths[r] += t  # read the row back with its new entries
            for i, (w, which, new) in enumerate((("k", pool.keys, k), ("v", pool.values, v))):
                want = torch.cat([olds[r, w], new[b]], dim=1)
                if not torch.equal(pool.gather(which, layer, r), want):
                    raise mismatch(f"update: row {b}'s {t} new entries must be written at its "
                                   f"positions {before[r]}..{before[r] + t - 1} (block "
                                   f"table[p // {size}], offset p % {size}), its old ones kept",
                                   pool.tables[r], want[0, :, 0], pool.gather(which, layer, r)[0, :, 0])
                start = end - before[r]
                if not torch.equal(got[i][b, :, start:], want):
                    raise mismatch(f"update: row {b} of what it returns must hold the row's "
                                   f"{before[r] + t} entries from slot {start} (left padded)",
                                   pool.tables[r], want[0, :, 0], got[i][b, 0, start:, 0])
            pool.lengths[r] = before[r]
    keys = pool.keys.clone()
    room = min(pool.room(r) for r in rows)
    too_many = torch.zeros(len(rows), c.kv_heads, room + 1, c.head_dim)
    raises_value_error(f"update of {room + 1} positions with room for {room}",
                       lambda: view.update(0, too_many, too_many))
    raises_value_error("update with k of one kv head too many", lambda: view.update(
        0, torch.zeros(len(rows), c.kv_heads + 1, 1, c.head_dim),
        torch.zeros(len(rows), c.kv_heads + 1, 1, c.head_dim)))
    raises_value_error(f"advance({room + 1}) with room for {room}", lambda: view.advance(room + 1))
    if not torch.equal(pool.keys, keys) or any(pool.lengths[r] != before[r] for r in rows):
        raise AssertionError("a refused update or advance changed the cache")
    view.advance(t)
    if [pool.lengths[r] for r in rows] != [before[r] + t for r in rows]:
        raise mismatch(f"advance({t}) must add {t} to every row's length in cache.lengths",
                       before, [before[r] + t for r in rows], [pool.lengths[r] for r in rows])
    _check_view_fields(f"PagedBatch after advance({t})", view, pool, rows)
    raises_value_error("a view of no requests", lambda: cls(pool, []))
    raises_value_error("a view of an unknown request", lambda: cls(pool, [rows[0], "unknown"]))
    raises_value_error("a view with a request twice", lambda: cls(pool, [rows[0], rows[0]]))


def check_paged_batch(cls, seed: int = 0) -> None:
    """Paged equals dense: prompts prefilled one at a time (sometimes in two chunks) and
    then decoded together through views, over scattered random blocks of 1 to 5 slots,
    give each request the logits of its sequence computed alone, and leave its rotated keys
    and values in its blocks; ``update`` against the pool read back with loops; bad
    views and writes past the reserved room refused, changing nothing."""
    rng, g = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(2):
        _check_update(cls, rng, g)
    for trial in range(2):
        model = _random_model(rng)
        vocab, size = model.config.vocab_size, rng.randrange(1, 6)
        steps = rng.randrange(1, 5)
        prompts = {rid: [rng.randrange(vocab) for _ in range(rng.randrange(1, 10))]
                   for rid in rng.sample(["a", "b", "c", 4], rng.randrange(1, 5))}
        pool = _Pool(model, rng, size, {r: len(p) + steps for r, p in prompts.items()})
        with torch.no_grad():
            for rid, prompt in prompts.items():
                cut = rng.randrange(1, len(prompt) + 1)
                for chunk in (prompt[:cut], prompt[cut:]):
                    if not chunk:
                        continue
                    done = pool.lengths[rid]
                    logits = forward_cached(model, torch.tensor([chunk]), cls(pool, [rid]))
                    want = _alone(model, prompt[:done + len(chunk)])[done:]
                    if not torch.allclose(logits[0], want, **TOLERANCE):
                        raise mismatch(f"prefill of request {rid!r} alone through a view (positions "
                                       f"{done}..{done + len(chunk) - 1}, block_size {size}, blocks "
                                       f"{pool.tables[rid]}) must equal the prompt alone",
                                       prompt, want[-1, :4], logits[0, -1, :4])
            sequences = {rid: list(p) for rid, p in prompts.items()}
            rows = list(prompts)
            reused = cls(pool, rows) if trial == 0 else None
            for _ in range(steps):
                if reused is None:
                    rows = rng.sample(list(prompts), rng.randrange(1, len(prompts) + 1))
                    rows = [r for r in rows if pool.room(r)] or rows
                    if not all(pool.room(r) for r in rows):
                        break
                view = reused or cls(pool, list(rows))
                _check_view_fields("a view in the decode loop", view, pool, rows)
                tokens = [rng.randrange(vocab) for _ in rows]
                got = forward_cached(model, torch.tensor(tokens)[:, None], view)[:, -1]
                for b, (rid, token) in enumerate(zip(rows, tokens)):
                    sequences[rid].append(token)
                    want = _alone(model, sequences[rid])[-1]
                    if not torch.allclose(got[b], want, **TOLERANCE):
                        raise mismatch(f"decode step over a view of {rows} (lengths differ, "
                                       f"block_size {size}{', the same view reused' if reused else ''}):"
                                       f" row {b} must equal its sequence recomputed alone",
                                       sequences[rid], want[:4], got[b, :4])
        for rid, sequence in sequences.items():
            if pool.lengths[rid] != len(sequence):
                raise mismatch(f"the cache must count {rid!r}'s tokens", sequence,
                               len(sequence), pool.lengths[rid])
            for layer, (k, v) in enumerate(_keys_values(model, sequence)):
                if not (torch.allclose(pool.gather(pool.keys, layer, rid), k, **TOLERANCE) and
                        torch.allclose(pool.gather(pool.values, layer, rid), v, **TOLERANCE)):
                    raise mismatch(f"the blocks of {rid!r} (layer {layer}) must hold its rotated "
                                   "keys and its values, as the dense cache does", sequence,
                                   k[0, :, 0], pool.gather(pool.keys, layer, rid)[0, :, 0])
