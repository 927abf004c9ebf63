"""Every chapter 3 check rejects a plausible wrong answer (a test must be able to fail)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from tinygpt.checks import ch03 as checks
from tinygpt.pretraining import attention, checkpoint, data, layers, model, moe, optim
from tinygpt.pretraining.step import train_step
from conftest import seeds_rejecting


def _interleaved_rope(x, cos, sin):  # LLaMA-1's pairing (2i, 2i + 1), not (i, i + D/2)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).flatten(-2)


def _unscaled_attention(q, k, v):
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)


def _unnormalised_weights(q, k, v, return_weights=False, mask=None):  # exp(scores), not their softmax
    out, weights = attention.causal_attention(q, k, v, return_weights=True, mask=mask)
    weights = weights * (torch.arange(1, q.shape[-2] + 1, dtype=weights.dtype)[:, None])
    return (out, weights) if return_weights else out


def _transposed_weights(q, k, v, return_weights=False):  # who looks at t, not what t looks at
    out, weights = attention.causal_attention(q, k, v, return_weights=True)
    return (out, weights.transpose(-1, -2)) if return_weights else out


def _mask_ignored(q, k, v, return_weights=False, mask=None):  # packed sequences see each other
    return attention.causal_attention(q, k, v, return_weights)


class _FusedPathDropsTheMask(attention.CausalSelfAttention):
    def forward(self, x, cos, sin, return_weights=False, mask=None):
        if self.use_sdpa and mask is not None:
            return super().forward(x, cos, sin)
        return super().forward(x, cos, sin, return_weights, mask)


class _BlockDropsTheMask(model.Block):
    def forward(self, x, cos, sin, mask=None):
        return super().forward(x, cos, sin)


class _PositionsIgnored(model.GPT):  # RoPE angles 0..T-1 along the packed row
    def forward(self, idx, positions=None, mask=None):
        return super().forward(idx, mask=mask)


class _WeightsOfOneHead(attention.CausalSelfAttention):  # the first head's map in every slot
    def forward(self, x, cos, sin, return_weights=False):
        if not return_weights:
            return super().forward(x, cos, sin)
        out, weights = super().forward(x, cos, sin, return_weights=True)
        return out, weights[:, :1].expand_as(weights)


class _NoRope(attention.CausalSelfAttention):
    def forward(self, x, cos, sin):
        return super().forward(x, torch.ones_like(cos), torch.zeros_like(sin))


class _LayerNormish(layers.RMSNorm):
    def forward(self, x):
        return super().forward(x - x.mean(-1, keepdim=True))


class _GateOnUp(layers.SwiGLU):
    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(gate * F.silu(up))


class _PostNorm(model.Block):
    def forward(self, x, cos, sin):
        x = self.norm1(x + self.attn(x, cos, sin))
        return self.norm2(x + self.mlp(x))


class _Untied(model.GPT):
    def __init__(self, config):
        super().__init__(config)
        self.lm_head.weight = torch.nn.Parameter(self.tok_emb.weight.detach().clone())


def _unshifted_loss(logits, tokens):
    return F.cross_entropy(logits.flatten(0, 1).float(), tokens.flatten())


def _adam_without_bias_correction(p, g, m, v, step, lr, beta1, beta2, eps, wd):
    optim.adamw_update(p, g, m, v, 10**9, lr, beta1, beta2, eps, wd)


def _warmup_from_zero(step, max_lr, min_lr, warmup, total):
    return max_lr * step / warmup if step < warmup else optim.lr_at(step, max_lr, min_lr, warmup, total)


def _clip_each_tensor(parameters, max_norm):
    params = [p for p in parameters if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
    for p in params:
        torch.nn.utils.clip_grad_norm_([p], max_norm)
    return total


def _step_without_zero_grad(net, opt, tokens, lr, clip, amp_dtype=None, reduce_grads=None):
    for group in opt.param_groups:
        group["lr"] = lr
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp_dtype is not None):
        loss = model.lm_loss(net(tokens), tokens)
    loss.backward()
    if reduce_grads:
        reduce_grads(net)
    norm = optim.clip_grad_norm(net.parameters(), clip)
    opt.step()
    return loss.detach(), norm


def _read_into_memory(path):
    shard = data.read_shard(path)
    return np.array(shard)


def _shard_then_offset(shards, batch_size, block_size, seed, step, rank=0, world_size=1):
    rng = np.random.default_rng([seed, step])
    usable = [s for s in shards if len(s) >= block_size]
    rows = []
    for _ in range(batch_size * world_size):
        s = usable[rng.integers(len(usable))]
        o = rng.integers(len(s) - block_size + 1)
        rows.append(s[o:o + block_size])
    return torch.from_numpy(np.stack(rows).astype(np.int64))[rank * batch_size:(rank + 1) * batch_size]


def _restore_weights_only(net, opt, tensors, meta):
    return checkpoint.restore_state(net, None, tensors, meta)


def _sum_without_mean(net):
    for p in net.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)


def _balance_without_e(probs, experts, n_expert):
    return moe.load_balancing_loss(probs, experts, n_expert) / n_expert


class _Renormalised(moe.MoE):  # Mixtral's weights: softmax over the chosen experts only
    def route(self, x):
        weights, experts, probs = super().route(x)
        return weights / weights.sum(-1, keepdim=True), experts, probs


class _AuxNotAttached(moe.MoE):  # logs the loss but never lets its gradient reach the router
    def forward(self, x):
        flat = x.reshape(-1, x.shape[-1])
        weights, experts, probs = self.route(flat)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(experts == e)
            out.index_add_(0, token, expert(flat[token]) * weights[token, slot, None])
        self.aux_loss = moe.load_balancing_loss(probs, experts, len(self.experts)).detach()
        return out.view_as(x)


MUTANTS = [
    (checks.check_rope, (attention.rope_cache, _interleaved_rope)),
    (checks.check_rope, (lambda d, t, base=1e4: attention.rope_cache(d, t, base * 2), attention.apply_rope)),
    (checks.check_causal_attention, (_unscaled_attention,)),
    (checks.check_causal_attention, (_unnormalised_weights,)),
    (checks.check_causal_attention, (_transposed_weights,)),
    (checks.check_self_attention, (_NoRope,)),
    (checks.check_self_attention, (_WeightsOfOneHead,)),
    (checks.check_causal_attention, (_mask_ignored,)),
    (checks.check_self_attention, (_FusedPathDropsTheMask,)),
    (checks.check_block, (_BlockDropsTheMask,)),
    (checks.check_gpt, (_PositionsIgnored,)),
    (checks.check_rmsnorm, (_LayerNormish,)),
    (checks.check_swiglu, (_GateOnUp,)),
    (checks.check_block, (_PostNorm,)),
    (checks.check_gpt, (_Untied,)),
    (checks.check_lm_loss, (_unshifted_loss,)),
    (checks.check_adamw_update, (_adam_without_bias_correction,)),
    (checks.check_lr_at, (_warmup_from_zero,)),
    (checks.check_clip_grad_norm, (_clip_each_tensor,)),
    (checks.check_train_step, (_step_without_zero_grad,)),
    (checks.check_read_shard, (_read_into_memory,)),
    (checks.check_sample_batch, (_shard_then_offset,)),
    (checks.check_checkpoint, (checkpoint.checkpoint_state, _restore_weights_only)),
    (checks.check_allreduce_gradients, (_sum_without_mean,)),
    (checks.check_load_balancing_loss, (_balance_without_e,)),
    (checks.check_moe, (_Renormalised,)),
    (checks.check_moe, (_AuxNotAttached,)),
]


def _name(x):
    return "+".join(getattr(u, "__name__", "fn") for u in x) if isinstance(x, tuple) else x.__name__


@pytest.mark.parametrize("check,units", MUTANTS, ids=_name)
def test_check_rejects_a_wrong_answer(check, units):
    failures = seeds_rejecting(check, units, 4)
    assert failures >= 3, f"{check.__name__} let a wrong answer through on {4 - failures} seeds"


def test_every_check_has_a_mutant():
    assert {c.__name__ for c, _ in MUTANTS} == {n for n in checks.__all__ if n.startswith("check_")}


def test_stubs_fail_every_function_check():
    def stub(*args, **kwargs):
        raise NotImplementedError

    class Stub(torch.nn.Module):
        def __init__(self, *args, **kwargs):
            raise NotImplementedError

    for check, units in MUTANTS:
        stubbed = tuple(Stub if isinstance(u, type) else stub for u in units)
        with pytest.raises((NotImplementedError, AssertionError)):
            check(*stubbed, seed=0)
