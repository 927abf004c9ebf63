"""Every chapter 10 check rejects a plausible wrong answer (a test must be able to fail)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from tinygpt.checks import ch10 as checks
from tinygpt.engine import kvcache as kc
from tinygpt.engine import prefill as pf
from tinygpt.pretraining.attention import apply_rope
from conftest import mutant_tests


class _CopyingCache(kc.KVCache):  # update returns copies: later writes are not seen
    def update(self, layer, k, v):
        keys, values = super().update(layer, k, v)
        return keys.clone(), values.clone()


class _SelfAdvancingCache(kc.KVCache):  # update moves end itself: layers write different slots
    def update(self, layer, k, v):
        out = super().update(layer, k, v)
        self.end += k.shape[2]
        return out

    def advance(self, t):
        pass


class _TruncatingCache(kc.KVCache):  # a write past the end is cut short instead of refused
    def update(self, layer, k, v):
        room = self.max_len - self.end
        if k.shape[2] > room:
            k, v = k[:, :, :room], v[:, :, :room]
        return super().update(layer, k, v)

    def advance(self, t):
        self.end = min(self.end + t, self.max_len)


class _TrustingCache(kc.KVCache):  # start takes any starts
    def start(self, starts):
        self.starts = starts


def _own(starts, end, t):
    """(t, S) own-slot matrix and (B, t) "query at a padding slot"."""
    own = torch.arange(end + t)[None, :] == torch.arange(end, end + t)[:, None]
    return own, torch.arange(end, end + t)[None, :] < starts[:, None]


def _mask_without_own_slot(starts, end, t):  # padding queries read nothing: nan
    own, padding = _own(starts, end, t)
    return kc.cache_mask(starts, end, t) & ~(own[None] & padding[:, :, None])


def _mask_ignoring_starts(starts, end, t):  # padding is read like any token
    return kc.cache_mask(torch.zeros_like(starts), end, t)


def _mask_strict_past(starts, end, t):  # a real query may not read its own token
    own, padding = _own(starts, end, t)
    return kc.cache_mask(starts, end, t) & ~(own[None] & ~padding[:, :, None])


def _attention_interleaved_heads(q, k, v, mask):  # query head i reads kv head i % Hkv
    groups = q.shape[1] // k.shape[1]
    shuffled = rearrange(q, "b (h g) t d -> b (g h) t d", g=groups)
    return rearrange(kc.cached_attention(shuffled, k, v, mask), "b (g h) t d -> b (h g) t d", g=groups)


def _attention_unscaled(q, k, v, mask):  # no 1 / sqrt(D)
    return kc.cached_attention(q * q.shape[-1] ** 0.5, k, v, mask)


def _attention_without_mask(q, k, v, mask):
    return kc.cached_attention(q, k, v, torch.ones_like(mask))


def _right_pad(prompts, vocab_size, max_len, pad_id=0):
    ids, starts = pf.left_pad(prompts, vocab_size, max_len, pad_id)
    rows = [p + [pad_id] * (ids.shape[1] - len(p)) for p in prompts]
    return torch.tensor(rows), starts


def _pad_truncating(prompts, vocab_size, max_len, pad_id=0):  # cuts a long prompt silently
    return pf.left_pad([p[-max_len:] if isinstance(p, list) else p for p in prompts],
                       vocab_size, max_len, pad_id)


def _pad_accepting_bools(prompts, vocab_size, max_len, pad_id=0):
    fixed = [[int(t) if isinstance(t, bool) else t for t in p] if isinstance(p, list) else p
             for p in prompts]
    return pf.left_pad(fixed, vocab_size, max_len, pad_id)


def _forward(model, ids, cache, positions, mask, last, attend=pf.attend):
    """forward_cached with the positions and the mask given."""
    cos, sin = model.rope_cos[positions][:, None], model.rope_sin[positions][:, None]
    x = model.tok_emb(ids)
    for layer, block in enumerate(model.blocks):
        x = x + attend(block.attn, block.norm1(x), cos, sin, cache, layer, mask)
        x = x + block.mlp(block.norm2(x))
    cache.advance(ids.shape[1])
    return model.lm_head(model.norm(x[:, -1:] if last else x))


def _positions(ids, cache):
    slots = torch.arange(cache.end, cache.end + ids.shape[1])
    return (slots[None] - cache.starts[:, None]).clamp(min=0)


def _forward_positions_from_slot(model, ids, cache, last=False):  # positions count from slot 0, not the prompt
    positions = torch.arange(cache.end, cache.end + ids.shape[1])[None].expand(ids.shape[0], -1)
    return _forward(model, ids, cache, positions, kc.cache_mask(cache.starts, cache.end, ids.shape[1]), last)


def _forward_causal_only(model, ids, cache, last=False):  # padding is attended to
    mask = kc.cache_mask(torch.zeros_like(cache.starts), cache.end, ids.shape[1])
    return _forward(model, ids, cache, _positions(ids, cache), mask, last)


def _attend_unrotated_keys(attn, x, cos, sin, cache, layer, mask):  # caches keys before RoPE
    kv = attn.n_kv_head * attn.head_dim
    q, k, v = attn.qkv(x).split([attn.n_head * attn.head_dim, kv, kv], dim=-1)
    q, k, v = (rearrange(z, "b t (h d) -> b h t d", d=attn.head_dim) for z in (q, k, v))
    keys, values = cache.update(layer, k, v)
    keys = torch.cat([keys[:, :, :-k.shape[2]], apply_rope(k, cos, sin)], dim=2)  # only the new ones turned
    y = F.scaled_dot_product_attention(apply_rope(q, cos, sin), keys, values, attn_mask=mask[:, None],
                                       enable_gqa=attn.n_kv_head != attn.n_head)
    return attn.out(rearrange(y, "b h t d -> b t (h d)"))


def _forward_unrotated_cache(model, ids, cache, last=False):
    return _forward(model, ids, cache, _positions(ids, cache),
                    kc.cache_mask(cache.starts, cache.end, ids.shape[1]), last, _attend_unrotated_keys)


def _forward_checks_late(model, ids, cache, last=False):  # runs the model, then checks the batch
    model.tok_emb(ids)
    return pf.forward_cached(model, ids, cache, last)


def _forward_all_positions(model, ids, cache, last=False):  # last ignored
    return pf.forward_cached(model, ids, cache)


def _prefill_right_padded(model, prompts, max_new_tokens=0):  # short rows end on padding
    done = pf.prefill(model, prompts, max_new_tokens)
    width = max(map(len, prompts))
    with torch.no_grad():
        done.logits = model(torch.tensor([p + [0] * (width - len(p)) for p in prompts]))[:, -1]
    return done


def _prefill_no_room(model, prompts, max_new_tokens=0):  # the cache holds the prompt only
    return pf.prefill(model, prompts, 0 if isinstance(max_new_tokens, int) and max_new_tokens > 0
                      else max_new_tokens)


def _prefill_window_ignored(model, prompts, max_new_tokens=0):  # the answer's room not checked
    return pf.prefill(model, prompts, 0 if isinstance(max_new_tokens, int) and
                      0 <= max_new_tokens < model.config.block_size else max_new_tokens)


def _decode_position_skipped(model, tokens, cache):  # the new token one position too far
    cache.starts -= 1
    try:
        return pf.decode_step(model, tokens, cache)
    finally:
        cache.starts += 1


def _decode_unchecked(model, tokens, cache):  # an id out of the vocabulary reaches the model
    with torch.no_grad():
        return pf.forward_cached(model, tokens[:, None].clamp(max=model.config.vocab_size - 1), cache)[:, -1]


MUTANTS = [
    (checks.check_kv_cache, (_CopyingCache,)),
    (checks.check_kv_cache, (_SelfAdvancingCache,)),
    (checks.check_kv_cache, (_TruncatingCache,)),
    (checks.check_kv_cache, (_TrustingCache,)),
    (checks.check_cache_mask, (_mask_without_own_slot,)),
    (checks.check_cache_mask, (_mask_ignoring_starts,)),
    (checks.check_cache_mask, (_mask_strict_past,)),
    (checks.check_cached_attention, (_attention_interleaved_heads,)),
    (checks.check_cached_attention, (_attention_unscaled,)),
    (checks.check_cached_attention, (_attention_without_mask,)),
    (checks.check_left_pad, (_right_pad,)),
    (checks.check_left_pad, (_pad_truncating,)),
    (checks.check_left_pad, (_pad_accepting_bools,)),
    (checks.check_forward_cached, (_forward_positions_from_slot,)),
    (checks.check_forward_cached, (_forward_causal_only,)),
    (checks.check_forward_cached, (_forward_unrotated_cache,)),
    (checks.check_forward_cached, (_forward_checks_late,)),
    (checks.check_forward_cached, (_forward_all_positions,)),
    (checks.check_prefill, (_prefill_right_padded,)),
    (checks.check_prefill, (_prefill_no_room,)),
    (checks.check_prefill, (_prefill_window_ignored,)),
    (checks.check_decode_step, (_decode_position_skipped,)),
    (checks.check_decode_step, (_decode_unchecked,)),
]

(test_check_rejects_a_wrong_answer, test_every_check_has_a_mutant,
 test_stubs_fail_every_check) = mutant_tests(MUTANTS, checks)
