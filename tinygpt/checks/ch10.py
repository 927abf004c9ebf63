"""Property checks for chapter 10 (the KV cache and prefill), written once and run against
anyone's code.

Notebook test cells call these on the learner's code (visible cells with seed 0, hidden
cells with fresh seeds); pytest calls the same checks on the exported reference. The
oracles are written here: the cache as a plain list of writes, the mask and grouped-query
attention as loops in float64, and for prefill chapter 3's uncached ``GPT.forward`` of
each prompt alone, its keys and values read by forward hooks on every layer's ``qkv``
projection. Models are random, of chapter 3's shape with random sizes, grouped-query
heads, a mixture of experts now and then, and the fused or the written-out attention.
Bad input must raise ``ValueError`` before any model work (counted by a hook on the
embedding). Checks print nothing.

Imports: chapter 3's model and chapter 10's ``KVCache`` (notebook 1, which the prefill
notebook is given), and nothing later.
"""
from __future__ import annotations

import math
import random

import torch
from einops import rearrange

from tinygpt.checks.common import mismatch, raises_value_error, written_here
from tinygpt.engine.kvcache import KVCache
from tinygpt.pretraining.attention import apply_rope
from tinygpt.pretraining.config import GPTConfig
from tinygpt.pretraining.model import GPT

__all__ = ["written_here", "small_model", "check_kv_cache", "check_cache_mask",
           "check_cached_attention", "check_left_pad", "check_forward_cached", "check_prefill",
           "check_decode_step"]

TOLERANCE = dict(atol=1e-4, rtol=1e-4)


def small_model(seed: int = 0, **sizes) -> GPT:
    """A random ``GPT`` of chapter 3's shape, small enough to check in milliseconds."""
    shape = dict(vocab_size=64, block_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return GPT(GPTConfig(**{**shape, **sizes})).eval()


def _random_model(rng: random.Random) -> GPT:
    n_head = rng.choice([2, 4])
    return small_model(rng.randrange(2 ** 31), n_layer=rng.choice([1, 2]), n_head=n_head,
                       n_kv_head=rng.choice([h for h in (1, 2, 4) if n_head % h == 0]),
                       n_embd=n_head * rng.choice([4, 8]), use_sdpa=rng.random() < 0.5,
                       n_expert=rng.choice([0, 0, 3]))


def _prompts(rng: random.Random, model: GPT, batch: int | None = None, longest: int = 12) -> list:
    batch = batch or rng.randrange(1, 5)
    return [[rng.randrange(model.config.vocab_size) for _ in range(rng.randrange(1, longest + 1))]
            for _ in range(batch)]


def _padded(rng: random.Random, prompts: list, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left padding written here, with random padding ids (which must change nothing)."""
    width = max(map(len, prompts))
    rows = [[rng.randrange(vocab) for _ in range(width - len(p))] + p for p in prompts]
    return torch.tensor(rows), torch.tensor([width - len(p) for p in prompts])


def _alone(model: GPT, sequence: list) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([sequence]))[0]


def _keys_values(model: GPT, sequence: list) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's rotated keys and values (n_kv_head, T, head_dim) for ``sequence`` alone."""
    caught, hooks = [], [b.attn.qkv.register_forward_hook(lambda m, i, out: caught.append(out))
                         for b in model.blocks]
    try:
        _alone(model, sequence)
    finally:
        for hook in hooks:
            hook.remove()
    c, t = model.config, len(sequence)
    out = []
    for projected in caught:
        _, k, v = projected.split([c.n_head * c.head_dim, c.kv_heads * c.head_dim,
                                   c.kv_heads * c.head_dim], dim=-1)
        k, v = (rearrange(z, "b t (h d) -> b h t d", d=c.head_dim) for z in (k, v))
        out.append((apply_rope(k, model.rope_cos[:t], model.rope_sin[:t])[0], v[0]))
    return out


def _oracle_cache(model: GPT, prompts: list, max_len: int) -> KVCache:
    """A cache filled here, from each prompt's uncached forward, left padded."""
    width = max(map(len, prompts))
    cache = KVCache.for_model(model, len(prompts), max_len)
    cache.starts = torch.tensor([width - len(p) for p in prompts])
    for row, prompt in enumerate(prompts):
        for layer, (k, v) in enumerate(_keys_values(model, prompt)):
            cache.keys[layer, row, :, width - len(prompt):width] = k
            cache.values[layer, row, :, width - len(prompt):width] = v
    cache.end = width
    return cache


def _compare_cache(what: str, cache, model: GPT, prompts: list) -> None:
    """The real slots of ``cache`` hold each prompt's keys and values computed alone."""
    width = max(map(len, prompts))
    for row, prompt in enumerate(prompts):
        for layer, (k, v) in enumerate(_keys_values(model, prompt)):
            got_k = cache.keys[layer, row, :, width - len(prompt):width]
            got_v = cache.values[layer, row, :, width - len(prompt):width]
            if not (torch.allclose(got_k, k, **TOLERANCE) and torch.allclose(got_v, v, **TOLERANCE)):
                raise mismatch(f"{what}: the cache of layer {layer}, row {row} (the prompt's "
                               "slots) must hold its rotated keys and its values", prompt,
                               k.flatten()[:6], got_k.flatten()[:6])


class _CountCalls:
    """Counts forward passes through a model's embedding (model work)."""

    def __init__(self, model: GPT):
        self.calls = 0
        self.hook = model.tok_emb.register_forward_hook(self._count)

    def _count(self, *_):
        self.calls += 1

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.hook.remove()


def refused_before_work(what: str, model: GPT, call) -> None:
    with _CountCalls(model) as counter:
        raises_value_error(what, call)
    if counter.calls:
        raise AssertionError(f"{what} raised, but only after running the model: check first")


def zeros_of_shape(cache, shape: tuple, name: str, layout: str) -> None:
    """A new cache's ``keys`` and ``values`` are float32 zeros of ``shape``."""
    for part in ("keys", "values"):
        got = getattr(cache, part)
        if tuple(got.shape) != shape or got.dtype != torch.float32 or got.any():
            raise mismatch(f"{name}.{part} must be float32 zeros of shape {layout}", shape, shape,
                           (tuple(got.shape), got.dtype))


def check_kv_cache(cls, seed: int = 0) -> None:
    """Shapes (GQA: n_kv_head heads), zeros, ``start``, writes through ``update`` against a
    list of writes, views not copies, ``end`` moved only by ``advance``, and bad input
    refused with nothing changed."""
    rng, g = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(4):
        n_layer, batch, heads = rng.randrange(1, 4), rng.randrange(1, 5), rng.randrange(1, 4)
        max_len, dim = rng.randrange(4, 13), rng.choice([2, 4, 8])
        shape = (n_layer, batch, heads, max_len, dim)
        cache = cls(n_layer, batch, heads, max_len, dim)
        zeros_of_shape(cache, shape, "KVCache", "(n_layer, batch, n_kv_head, max_len, head_dim)")
        if cache.end != 0 or not torch.equal(cache.starts, torch.zeros(batch, dtype=torch.long)):
            raise mismatch("a new KVCache has end 0 and starts all 0 (long)", shape, 0,
                           (cache.end, cache.starts))
        if cls(1, 1, 1, 2, 2, dtype=torch.float64).keys.dtype != torch.float64:
            raise AssertionError("KVCache(..., dtype=torch.float64) must store float64")
        raises_value_error(f"KVCache{(n_layer, batch, 0, max_len, dim)}",
                           lambda: cls(n_layer, batch, 0, max_len, dim))
        for bad in (torch.zeros(batch + 1, dtype=torch.long), torch.zeros(batch),
                    torch.full((batch,), max_len), torch.full((batch,), -1)):
            raises_value_error(f"start({bad}) on a cache of batch {batch}, max_len {max_len}",
                               lambda: cls(*shape[:3], max_len, dim).start(bad))
        starts = torch.tensor([rng.randrange(max_len) for _ in range(batch)])
        cache.start(starts)
        if not torch.equal(cache.starts, starts):
            raise mismatch("start(starts) must keep starts", starts, starts, cache.starts)
        keys, values = torch.zeros(shape), torch.zeros(shape)
        end = 0
        while True:
            t = rng.randrange(1, 4)
            k, v = (torch.randn(batch, heads, t, dim, generator=g) for _ in range(2))
            if end + t > max_len:
                raises_value_error(f"update of {t} positions with {end} of {max_len} used",
                                   lambda: cache.update(0, k, v))
                raises_value_error(f"advance({t}) with {end} of {max_len} used",
                                   lambda: cache.advance(t))
                break
            for layer in rng.sample(range(n_layer), n_layer):
                got = cache.update(layer, k, v)
                keys[layer, :, :, end:end + t], values[layer, :, :, end:end + t] = k, v
                want = (keys[layer, :, :, :end + t], values[layer, :, :, :end + t])
                if not isinstance(got, tuple) or len(got) != 2 or any(
                        tuple(g.shape) != tuple(w.shape) or not torch.equal(g, w)
                        for g, w in zip(got, want)):
                    raise mismatch(f"update({layer}, k, v) of {t} positions after {end} must "
                                   f"return the layer's slots [0, {end + t})", (layer, t),
                                   [tuple(w.shape) for w in want], got)
                if got[0].data_ptr() != cache.keys[layer].data_ptr():
                    raise AssertionError("update must return views of the cache, not copies")
                if cache.end != end:
                    raise AssertionError("update must not move end: advance does, once all "
                                         "layers have written")
            raises_value_error(f"update with k of {heads + 1} kv heads",
                               lambda: cache.update(0, torch.zeros(batch, heads + 1, 1, dim),
                                                    torch.zeros(batch, heads + 1, 1, dim)))
            raises_value_error("update with k and v of different shapes",
                               lambda: cache.update(0, k, torch.zeros(batch, heads, t + 1, dim)))
            cache.advance(t)
            end += t
            if cache.end != end:
                raise mismatch(f"advance({t}) must move end", t, end, cache.end)
        if not (torch.equal(cache.keys, keys) and torch.equal(cache.values, values)):
            raise AssertionError("a refused write changed the cache, or a write went to the "
                                 "wrong slots")
        want = (end - starts).clamp(min=0)
        if not torch.equal(cache.lengths, want):
            raise mismatch("lengths after the writes", starts, want, cache.lengths)
        raises_value_error("start on a cache that holds tokens", lambda: cache.start(starts))


def _mask_oracle(starts: list, end: int, t: int) -> list:
    return [[[(start <= s <= end + i) or s == end + i for s in range(end + t)] for i in range(t)]
            for start in starts]


def check_cache_mask(fn, seed: int = 0) -> None:
    """Real, not future, or the query's own slot, against loops, over random starts."""
    rng = random.Random(seed)
    for _ in range(10):
        end, t = rng.randrange(0, 8), rng.randrange(1, 6)
        starts = [rng.randrange(end + t) for _ in range(rng.randrange(1, 5))]
        got = fn(torch.tensor(starts), end, t)
        want = torch.tensor(_mask_oracle(starts, end, t))
        if not isinstance(got, torch.Tensor) or got.dtype != torch.bool or not torch.equal(got, want):
            raise mismatch(f"cache_mask(starts={starts}, end={end}, t={t})", starts,
                           want.int().tolist(), got.int().tolist() if isinstance(got, torch.Tensor) else got)


def _attention_oracle(q, k, v, mask) -> torch.Tensor:
    groups = q.shape[1] // k.shape[1]
    out = torch.zeros(q.shape, dtype=torch.float64)
    for h in range(q.shape[1]):
        scores = q[:, h].double() @ k[:, h // groups].double().transpose(-1, -2) / math.sqrt(q.shape[-1])
        out[:, h] = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v[:, h // groups].double()
    return out


def check_cached_attention(fn, seed: int = 0) -> None:
    """Grouped-query attention under cache masks and random masks, against a loop over heads
    in float64; the output in v's dtype; bad shapes refused."""
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    for trial in range(8):
        hkv = rng.choice([1, 2, 3])
        h, b, t, d = hkv * rng.choice([1, 2, 4]), rng.randrange(1, 4), rng.randrange(1, 5), rng.choice([4, 8])
        end = rng.randrange(0, 6)
        s = end + t
        q = torch.randn(b, h, t, d, generator=g) * rng.choice([0.5, 2.0])
        k, v = torch.randn(b, hkv, s, d, generator=g), torch.randn(b, hkv, s, d, generator=g)
        if trial % 2:
            mask = torch.rand(b, t, s, generator=g) < 0.5
            mask[..., rng.randrange(s)] = True
        else:
            mask = torch.tensor(_mask_oracle([rng.randrange(s) for _ in range(b)], end, t))
        got = fn(q, k, v, mask)
        want = _attention_oracle(q, k, v, mask)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape or got.dtype != v.dtype or \
                not torch.allclose(got.double(), want, atol=1e-5):
            raise mismatch(f"cached_attention with q {tuple(q.shape)}, k {tuple(k.shape)} "
                           f"(query head i reads kv head i // {h // hkv})", mask.int().tolist(),
                           want.flatten()[:6], got.flatten()[:6] if isinstance(got, torch.Tensor) else got)
    raises_value_error("cached_attention with 3 query heads and 2 kv heads",
                       lambda: fn(torch.zeros(1, 3, 1, 4), torch.zeros(1, 2, 1, 4),
                                  torch.zeros(1, 2, 1, 4), torch.ones(1, 1, 1, dtype=torch.bool)))
    raises_value_error("cached_attention with a mask of the wrong shape",
                       lambda: fn(torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 3, 4),
                                  torch.zeros(1, 2, 3, 4), torch.ones(1, 1, 2, dtype=torch.bool)))


def check_left_pad(fn, seed: int = 0) -> None:
    """Right-aligned rows after ``pad_id`` and their starts; every bad batch refused."""
    rng = random.Random(seed)
    for _ in range(8):
        vocab, max_len, pad = rng.randrange(5, 50), rng.randrange(1, 10), rng.randrange(5)
        prompts = [[rng.randrange(vocab) for _ in range(rng.randrange(1, max_len + 1))]
                   for _ in range(rng.randrange(1, 5))]
        width = max(map(len, prompts))
        want = [[pad] * (width - len(p)) + p for p in prompts]
        got = fn([list(p) for p in prompts], vocab, max_len, pad_id=pad)
        if not isinstance(got, tuple) or len(got) != 2 or got[0].dtype != torch.long or \
                got[0].tolist() != want or got[1].dtype != torch.long or \
                got[1].tolist() != [width - len(p) for p in prompts]:
            raise mismatch(f"left_pad(prompts, vocab_size={vocab}, max_len={max_len}, pad_id={pad})",
                           prompts, (want, [width - len(p) for p in prompts]), got)
        row = rng.randrange(len(prompts))
        bad_batches = [[], tuple(prompts), "hello"]
        for bad_prompt in ([], [vocab], [-1], [True], [1.0], [0] * (max_len + 1), (1, 2)):
            bad = [list(p) for p in prompts]
            bad[row] = bad_prompt
            bad_batches.append(bad)
        for bad in bad_batches:
            raises_value_error(f"left_pad({bad!r}, vocab_size={vocab}, max_len={max_len})",
                               lambda: fn(bad, vocab, max_len))


def check_forward_cached(fn, seed: int = 0) -> None:
    """A padded batch through the cache gives each prompt its logits alone, and fills the
    cache with its keys and values; padding ids change nothing; a second chunk through the
    cache equals recomputing the whole sequence (all its positions, or with ``last`` the
    last one); a batch that does not fit is refused
    before any model work."""
    rng = random.Random(seed)
    for trial in range(3):
        model = _random_model(rng)
        vocab = model.config.vocab_size
        prompts = _prompts(rng, model)
        more = rng.randrange(2 if trial == 1 else 1, 4)  # trial 1 asks for the last position only
        ids, starts = _padded(rng, prompts, vocab)
        runs = []
        for pads in (ids, _padded(rng, prompts, vocab)[0]):
            cache = KVCache.for_model(model, len(prompts), ids.shape[1] + more)
            cache.start(starts)
            with torch.no_grad():
                logits = fn(model, pads, cache)
            runs.append((logits, cache))
        (logits, cache), (other, _) = runs
        shape = (len(prompts), ids.shape[1], vocab)
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != shape or cache.end != ids.shape[1]:
            raise mismatch("forward_cached must return logits (batch, t, vocab) and advance the "
                           "cache by t", prompts, (shape, ids.shape[1]),
                           (getattr(logits, "shape", logits), cache.end))
        for row, prompt in enumerate(prompts):
            real = slice(int(starts[row]), None)
            if not torch.allclose(logits[row, real], _alone(model, prompt), **TOLERANCE):
                raise mismatch(f"forward_cached: row {row} of a padded batch must get the logits "
                               f"of its prompt alone ({model.config})", prompt,
                               _alone(model, prompt)[-1, :4], logits[row, -1, :4])
            if not torch.allclose(other[row, real], logits[row, real], **TOLERANCE):
                raise AssertionError("forward_cached: changing the padding ids changed a real "
                                     "token's logits (the mask must hide padding)")
        _compare_cache("forward_cached", cache, model, prompts)
        new = [[rng.randrange(vocab) for _ in range(more)] for _ in prompts]
        last = trial == 1
        with torch.no_grad():
            step = fn(model, torch.tensor(new), cache, last=last)
        for row, prompt in enumerate(prompts):
            want = _alone(model, prompt + new[row])[-1:] if last else _alone(model, prompt + new[row])[-more:]
            if tuple(step.shape) != (len(prompts), len(want), vocab) or \
                    not torch.allclose(step[row], want, **TOLERANCE):
                raise mismatch(f"forward_cached(..., last={last}): {more} more positions through "
                               "the cache must equal the whole sequence recomputed",
                               prompt + new[row], want[-1, :4], step[row, -1, :4])
        small = KVCache.for_model(model, len(prompts), ids.shape[1])
        small.start(torch.zeros(len(prompts), dtype=torch.long))
        small.end = 1
        refused_before_work(f"forward_cached of {ids.shape[1]} positions into a cache of "
                             f"{small.max_len} with one slot used", model, lambda: fn(model, ids, small))
        if small.end != 1:
            raise AssertionError("a refused forward_cached moved the cache's end")
        wide = KVCache.for_model(model, len(prompts) + 1, ids.shape[1])
        refused_before_work(f"forward_cached of {len(prompts)} rows into a cache of "
                             f"{len(prompts) + 1}", model, lambda: fn(model, ids, wide))


def check_prefill(fn, seed: int = 0) -> None:
    """Last-position logits equal each prompt alone; the cache holds the prompts with room
    for max_new_tokens; prompts that do not fit and other bad input refused before any
    model work."""
    rng = random.Random(seed)
    for _ in range(3):
        model = _random_model(rng)
        c = model.config
        prompts, m = _prompts(rng, model), rng.randrange(0, 6)
        width = max(map(len, prompts))
        done = fn(model, [list(p) for p in prompts], max_new_tokens=m)
        logits, cache = getattr(done, "logits", None), getattr(done, "cache", None)
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (len(prompts), c.vocab_size):
            raise mismatch("prefill(...).logits must be (batch, vocab)", prompts,
                           (len(prompts), c.vocab_size), getattr(logits, "shape", logits))
        for row, prompt in enumerate(prompts):
            if not torch.allclose(logits[row], _alone(model, prompt)[-1], **TOLERANCE):
                raise mismatch(f"prefill: row {row}'s logits must be its prompt's last logits alone",
                               prompt, _alone(model, prompt)[-1, :4], logits[row, :4])
        starts = [width - len(p) for p in prompts]
        if cache is None or cache.end != width or cache.max_len != width + m or \
                cache.starts.tolist() != starts:
            raise mismatch(f"prefill(..., max_new_tokens={m}): the cache holds the prompts "
                           "(end, max_len, starts)", prompts, (width, width + m, starts),
                           cache and (cache.end, cache.max_len, cache.starts.tolist()))
        _compare_cache("prefill", cache, model, prompts)
        room = c.block_size - m
        fits = [[rng.randrange(c.vocab_size) for _ in range(room)]]
        if fn(model, fits, max_new_tokens=m).cache.max_len != c.block_size:
            raise AssertionError(f"a prompt of {room} tokens with max_new_tokens={m} fills the "
                                 f"context window of {c.block_size} exactly: it must be served")
        row = rng.randrange(len(prompts))
        for bad_prompt in ([0] * (room + 1), [], [c.vocab_size], [-1]):
            bad = [list(p) for p in prompts]
            bad[row] = bad_prompt
            refused_before_work(f"prefill with prompt {row} = {bad_prompt[:6]} "
                                 f"({len(bad_prompt)} tokens), max_new_tokens={m}, "
                                 f"block_size={c.block_size}", model,
                                 lambda: fn(model, bad, max_new_tokens=m))
        for bad_m in (-1, c.block_size, 1.5):
            refused_before_work(f"prefill with max_new_tokens={bad_m}", model,
                                 lambda: fn(model, [list(p) for p in prompts], max_new_tokens=bad_m))
        refused_before_work("prefill of no prompts", model, lambda: fn(model, []))


def check_decode_step(fn, seed: int = 0) -> None:
    """Steps through a cache filled here equal the whole sequence recomputed, each moving
    the cache by one; bad tokens refused before any model work, the cache unchanged."""
    rng = random.Random(seed)
    for _ in range(3):
        model = _random_model(rng)
        vocab = model.config.vocab_size
        prompts, steps = _prompts(rng, model), rng.randrange(1, 5)
        cache = _oracle_cache(model, prompts, max(map(len, prompts)) + steps)
        sequences = [list(p) for p in prompts]
        for _ in range(steps):
            end = cache.end
            refused_before_work("decode_step with an id outside the vocabulary", model,
                                 lambda: fn(model, torch.full((len(prompts),), vocab), cache))
            refused_before_work("decode_step with one token too many", model,
                                 lambda: fn(model, torch.zeros(len(prompts) + 1, dtype=torch.long), cache))
            if cache.end != end:
                raise AssertionError("a refused decode_step moved the cache's end")
            tokens = [rng.randrange(vocab) for _ in prompts]
            got = fn(model, torch.tensor(tokens), cache)
            for row, token in enumerate(tokens):
                sequences[row].append(token)
                want = _alone(model, sequences[row])[-1]
                if not isinstance(got, torch.Tensor) or tuple(got.shape) != (len(prompts), vocab) \
                        or not torch.allclose(got[row], want, **TOLERANCE):
                    raise mismatch(f"decode_step: row {row}'s logits must equal the sequence "
                                   "recomputed whole", sequences[row], want[:4],
                                   got[row, :4] if isinstance(got, torch.Tensor) else got)
            if cache.end != end + 1:
                raise mismatch("decode_step moves the cache by one", tokens, end + 1, cache.end)
