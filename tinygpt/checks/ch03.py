"""Property checks for chapter 3 (pre-training), written once and run against anyone's code.

Notebook test cells call these on the learner's functions and classes (visible cells
with seed 0, hidden cells with fresh seeds); pytest calls the same checks on the
exported reference. Each check draws random shapes and values from ``seed`` and compares
with a well-kept library where one exists (``F.scaled_dot_product_attention``,
``F.rms_norm``, ``F.cross_entropy``, ``torch.optim.AdamW``,
``torch.nn.utils.clip_grad_norm_``) or with a plain oracle written here (RoPE with
complex numbers, attention head by head, a dense mixture of experts), and checks the
invariants: causality, relative positions, exact resume, DDP equal to one large batch.
Tolerances are per dtype (float32 1e-5, bfloat16 5e-2); failures print the largest and
mean difference. Checks run on the CPU and print nothing.

Imports: chapter 3's reference (``tinygpt.pretraining``) and nothing later.
"""
from __future__ import annotations

import copy
import json
import math
import random
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from tinygpt.checks.common import written_here
from tinygpt.pretraining import data as ref_data
from tinygpt.pretraining import model as ref_model
from tinygpt.pretraining.config import GPTConfig
from tinygpt.pretraining.moe import MoE as RefMoE
from tinygpt.pretraining.optim import AdamW, param_groups
from tinygpt.pretraining.step import train_step as ref_train_step

__all__ = ["written_here", "random_config", "check_rope", "check_causal_attention",
           "check_self_attention", "check_rmsnorm", "check_swiglu", "check_block",
           "check_gpt", "check_lm_loss", "check_adamw_update", "check_lr_at",
           "check_clip_grad_norm", "check_train_step", "check_read_shard",
           "check_sample_batch", "check_checkpoint", "check_allreduce_gradients",
           "check_load_balancing_loss", "check_moe"]

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 5e-2}


def _close(what: str, got, expected: torch.Tensor, atol: float | None = None,
           rtol: float = 0.0) -> None:
    """Fail unless ``got`` is a tensor of ``expected``'s shape within the tolerance."""
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{what}: expected a tensor, got {type(got).__name__}")
    if tuple(got.shape) != tuple(expected.shape):
        raise AssertionError(f"{what}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
    atol = TOLERANCE[expected.dtype] if atol is None else atol
    a, b = got.detach().double(), expected.detach().double()
    if not torch.allclose(a, b, atol=atol, rtol=rtol):
        diff = (a - b).abs().nan_to_num(float("inf"))
        raise AssertionError(f"{what}: max difference {diff.max().item():.3g} (mean "
                             f"{diff.mean().item():.3g}), tolerance {atol:g}")


def _randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * scale


def random_config(rng: random.Random, **fixed) -> GPTConfig:
    """A small random GPTConfig: 1-2 layers, 1-4 heads, sometimes grouped-query."""
    n_head = rng.choice([1, 2, 4])
    n_kv = rng.choice([h for h in (1, 2, 4) if n_head % h == 0])
    head_dim = rng.choice([4, 8])
    fields = {"vocab_size": rng.choice([32, 48, 64]), "block_size": rng.choice([8, 12, 16]),
              "n_layer": rng.choice([1, 2]), "n_head": n_head, "n_kv_head": n_kv,
              "n_embd": n_head * head_dim, "mlp_hidden": rng.choice([None, 24])}
    fields.update(fixed)
    return GPTConfig(**fields)


def _built(cls, rng: random.Random, **fixed):
    """``cls(config)`` for a random config, its weights drawn from a seed taken from ``rng``."""
    config = random_config(rng, **fixed)
    torch.manual_seed(rng.randrange(1000))
    return config, cls(config)


# ---------------------------------------------------------------- notebook 1

def _rope_oracle(x: torch.Tensor, base: float) -> torch.Tensor:
    """RoPE with complex numbers in float64: pair (i, i + D/2) is one complex number."""
    t, d = x.shape[-2], x.shape[-1]
    angles = torch.outer(torch.arange(t, dtype=torch.float64),
                         base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d))
    z = torch.complex(x[..., : d // 2].double(), x[..., d // 2:].double()) * torch.polar(
        torch.ones_like(angles), angles)
    return torch.cat([z.real, z.imag], dim=-1)


def check_rope(rope_cache, apply_rope, seed: int) -> None:
    """Angles t * base^(-2i/D); equal to complex rotation; lengths kept; scores see offsets only."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(4):
        d, t = rng.choice([2, 4, 8, 16, 32]), rng.randrange(1, 40)
        base = rng.choice([10000.0, 500.0, 1e6])
        cos, sin = rope_cache(d, t, base)
        angles = torch.outer(torch.arange(t, dtype=torch.float64),
                             base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d))
        if cos.dtype != torch.float32 or sin.dtype != torch.float32:
            raise AssertionError(f"rope_cache must return float32, got {cos.dtype}, {sin.dtype}")
        _close(f"rope_cache({d}, {t}, {base}) cos", cos, angles.cos().float())
        _close(f"rope_cache({d}, {t}, {base}) sin", sin, angles.sin().float())
        x = _randn(gen, rng.randrange(1, 3), rng.randrange(1, 4), t, d)
        before = x.clone()
        got = apply_rope(x, cos, sin)
        _close(f"apply_rope on x of shape {tuple(x.shape)} (base {base}) against complex "
               "rotation of pairs (i, i + D/2)", got, _rope_oracle(x, base).float())
        if not torch.equal(x, before):
            raise AssertionError("apply_rope changed its input")
        half = apply_rope(x.bfloat16(), cos, sin)
        if half.dtype != torch.bfloat16:
            raise AssertionError(f"apply_rope must keep the input dtype: bfloat16 in, {half.dtype} out")
        _close("apply_rope on bfloat16 input", half.float(), got, atol=TOLERANCE[torch.bfloat16])
    # relative positions: <rope(q)_m, rope(k)_n> depends on m - n only
    d, t = 16, 24
    cos, sin = rope_cache(d, t)
    q, k = _randn(gen, d), _randn(gen, d)
    rq, rk = apply_rope(q.expand(t, d), cos, sin), apply_rope(k.expand(t, d), cos, sin)
    for offset in (0, 3, 7):
        scores = torch.stack([rq[m] @ rk[m - offset] for m in range(offset, t)])
        if (scores - scores[0]).abs().max() > 1e-4:
            raise AssertionError(f"RoPE scores at offset {offset} vary with absolute position: "
                                 f"{scores[:4].tolist()}")


def check_causal_attention(causal_attention, seed: int) -> None:
    """Equals SDPA (causal, GQA); the future never leaks; non-contiguous and large inputs work."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for trial in range(6):
        b, hkv, groups = rng.randrange(1, 3), rng.choice([1, 2]), rng.choice([1, 2, 4])
        t, d = rng.choice([1, 2, 7, 16]), rng.choice([4, 8, 16])
        scale = 30.0 if trial == 5 else 1.0  # large scores: softmax must not overflow
        q = _randn(gen, b, t, hkv * groups, d, scale=scale).transpose(1, 2)  # non-contiguous
        k, v = _randn(gen, b, hkv, t, d), _randn(gen, b, hkv, t, d)
        got = causal_attention(q, k, v)
        expected = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        _close(f"causal_attention with B={b}, H={hkv * groups}, Hkv={hkv}, T={t}, D={d}, "
               f"scores x{scale:g}, against F.scaled_dot_product_attention", got, expected,
               atol=1e-4 if scale > 1 else 1e-5)
        if t > 1:
            s = rng.randrange(1, t)
            k2, v2 = k.clone(), v.clone()
            k2[:, :, s:] = _randn(gen, b, hkv, t - s, d)
            v2[:, :, s:] = _randn(gen, b, hkv, t - s, d)
            _close(f"changing keys and values from position {s} on changed earlier outputs",
                   causal_attention(q, k2, v2)[:, :, :s], got[:, :, :s])
        _check_weights(f"causal_attention(..., return_weights=True) with H={hkv * groups}, "
                       f"Hkv={hkv}, T={t}", lambda: causal_attention(q, k, v, return_weights=True),
                       got, _weights_oracle(q, k))


def _weights_oracle(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(D) + mask) with each key head repeated for its group of queries."""
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1).double()
    t = q.shape[-2]
    mask = torch.full((t, t), float("-inf"), dtype=torch.float64).triu(1)
    return torch.softmax(q.double() @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + mask, -1)


def _check_weights(what: str, call, out: torch.Tensor, expected: torch.Tensor) -> None:
    """``call()`` returns (output equal to ``out``, weights equal to ``expected``)."""
    try:
        returned = call()
    except TypeError as error:
        if "return_weights" not in str(error):
            raise
        raise AssertionError(f"{what}: the option is missing ({error})") from None
    if not (isinstance(returned, tuple) and len(returned) == 2):
        raise AssertionError(f"{what} must return a pair (output, weights), got {type(returned).__name__}")
    got, weights = returned
    _close(f"{what}: the output", got, out, atol=1e-5)
    if tuple(weights.shape) != tuple(expected.shape):
        raise AssertionError(f"{what}: weights of shape {tuple(weights.shape)}, expected "
                             f"{tuple(expected.shape)} (B, H, T, T)")
    _close(f"{what}: the weights against softmax(q k^T / sqrt(D) + causal mask)",
           weights.double(), expected, atol=1e-5)


def _attention_oracle(w_qkv, w_out, x, cos, sin, n_head, n_kv) -> torch.Tensor:
    """Self-attention head by head, with plain loops and an explicit mask."""
    b, t, _ = x.shape
    d = w_out.shape[1] // n_head
    q_all, k_all, v_all = (x @ w_qkv.T).split([n_head * d, n_kv * d, n_kv * d], dim=-1)
    rot = lambda z: torch.cat([z[..., :d // 2] * cos - z[..., d // 2:] * sin,
                               z[..., d // 2:] * cos + z[..., :d // 2] * sin], dim=-1)
    mask = torch.full((t, t), float("-inf")).triu(1)
    heads = []
    for h in range(n_head):
        kv = h // (n_head // n_kv)
        q = rot(q_all[..., h * d:(h + 1) * d])
        k = rot(k_all[..., kv * d:(kv + 1) * d])
        v = v_all[..., kv * d:(kv + 1) * d]
        heads.append(torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d) + mask, dim=-1) @ v)
    return torch.cat(heads, dim=-1) @ w_out.T


def check_self_attention(CausalSelfAttention, seed: int) -> None:
    """Weights named qkv/out; equals head-by-head attention (MHA and GQA), SDPA on or off; causal."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(3):
        config, attn = _built(CausalSelfAttention, rng)
        h, hkv, d = config.n_head, config.kv_heads, config.head_dim
        shapes = {k: tuple(v.shape) for k, v in attn.state_dict().items()}
        want = {"qkv.weight": ((h + 2 * hkv) * d, config.n_embd), "out.weight": (config.n_embd, h * d)}
        if shapes != want:
            raise AssertionError(f"weights for {config}: {shapes}, expected {want}")
        t = rng.randrange(1, config.block_size + 1)
        cos, sin = ref_model.rope_cache(d, t)
        x = _randn(gen, rng.randrange(1, 3), t, config.n_embd)
        expected = _attention_oracle(attn.qkv.weight.detach(), attn.out.weight.detach(), x,
                                     cos, sin, h, hkv)
        for use_sdpa in (True, False):
            attn.use_sdpa = use_sdpa
            got = attn(x, cos, sin)
            _close(f"CausalSelfAttention (H={h}, Hkv={hkv}, D={d}, T={t}, use_sdpa={use_sdpa}) "
                   "against attention computed head by head", got, expected)
        if t > 1:
            s = rng.randrange(1, t)
            x2 = x.clone()
            x2[:, s:] = _randn(gen, x.shape[0], t - s, config.n_embd)
            _close(f"changing tokens from position {s} on changed earlier outputs",
                   attn(x2, cos, sin)[:, :s], got[:, :s])
        attn.use_sdpa = rng.random() < 0.5
        q, k, _ = (x @ attn.qkv.weight.detach().T).split([h * d, hkv * d, hkv * d], dim=-1)
        q, k = (_rope_oracle(z.unflatten(-1, (-1, d)).transpose(1, 2), 10000.0) for z in (q, k))
        _check_weights(f"CausalSelfAttention(..., return_weights=True) (H={h}, Hkv={hkv}, T={t}, "
                       f"use_sdpa={attn.use_sdpa})", lambda: attn(x, cos, sin, return_weights=True),
                       expected, _weights_oracle(q, k))


# ---------------------------------------------------------------- notebook 2

def check_rmsnorm(RMSNorm, seed: int) -> None:
    """Equals F.rms_norm with the learned gain; keeps bfloat16 in bfloat16; large inputs are fine."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for trial in range(4):
        dim, eps = rng.choice([1, 3, 8, 64]), rng.choice([1e-5, 1e-6, 0.1])
        norm = RMSNorm(dim, eps)
        weight = _randn(gen, dim)
        norm.load_state_dict({"weight": weight})
        x = _randn(gen, rng.randrange(1, 3), rng.randrange(1, 5), dim,
                   scale=1e4 if trial == 3 else 1.0)
        _close(f"RMSNorm({dim}, eps={eps}) against F.rms_norm", norm(x),
               F.rms_norm(x, (dim,), weight, eps), rtol=1e-5)
        half = norm(x.bfloat16())
        if half.dtype != torch.bfloat16:
            raise AssertionError(f"RMSNorm must return the input's dtype: bfloat16 in, {half.dtype} out")
        _close("RMSNorm on bfloat16 input", half.float(),
               F.rms_norm(x.bfloat16().float(), (dim,), weight, eps),
               atol=TOLERANCE[torch.bfloat16], rtol=2e-2)


def check_swiglu(SwiGLU, seed: int) -> None:
    """Weights gate_up (gate first) and down; down(silu(gate x) * up x)."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(3):
        config, mlp = _built(SwiGLU, rng)
        shapes = {k: tuple(v.shape) for k, v in mlp.state_dict().items()}
        want = {"gate_up.weight": (2 * config.hidden, config.n_embd),
                "down.weight": (config.n_embd, config.hidden)}
        if shapes != want:
            raise AssertionError(f"weights for n_embd={config.n_embd}, hidden={config.hidden}: "
                                 f"{shapes}, expected {want}")
        x = _randn(gen, 2, rng.randrange(1, 5), config.n_embd)
        w = mlp.gate_up.weight.detach()
        gate, up = x @ w[:config.hidden].T, x @ w[config.hidden:].T
        expected = (gate * torch.sigmoid(gate) * up) @ mlp.down.weight.detach().T
        _close("SwiGLU against down(silu(gate x) * up x)", mlp(x), expected)


def _same_model(what: str, learner, reference) -> None:
    """Load the learner's weights into the reference: the names and shapes must match."""
    try:
        reference.load_state_dict(learner.state_dict())
    except RuntimeError as err:
        raise AssertionError(f"{what}: its weights do not match the reference's: "
                             f"{str(err).splitlines()[0]}") from None


def check_block(Block, seed: int) -> None:
    """Pre-norm residual block equal to the reference with the same weights (dense and MoE); causal."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for trial in range(3):
        experts = {"n_expert": 3, "top_k": 2} if trial == 2 else {}
        config, block = _built(Block, rng, **experts)
        ref = ref_model.Block(config)
        _same_model(f"Block({'MoE' if experts else 'dense'})", block, ref)
        t = rng.randrange(2, config.block_size + 1)
        cos, sin = ref_model.rope_cache(config.head_dim, t)
        x = _randn(gen, 2, t, config.n_embd)
        got = block(x, cos, sin)
        _close(f"Block ({'MoE' if experts else 'dense'} MLP) against the reference", got,
               ref(x, cos, sin))
        x2 = x.clone()
        x2[:, -1] += 1.0
        _close("changing the last position changed earlier outputs",
               block(x2, cos, sin)[:, :-1], got[:, :-1])


def check_gpt(GPT, seed: int) -> None:
    """Tied weights, GPT-2 init, loss near ln V, equal to the reference, causal, length checked."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(2):
        config, model = _built(GPT, rng)
        if model.lm_head.weight is not model.tok_emb.weight:
            raise AssertionError("lm_head.weight must be the same Parameter as tok_emb.weight")
        ref = ref_model.GPT(config)
        _same_model("GPT", model, ref)
        n_params = sum(p.numel() for p in model.parameters())
        n_ref = sum(p.numel() for p in ref.parameters())
        if n_params != n_ref:
            raise AssertionError(f"GPT has {n_params} parameters, the reference {n_ref}")
        emb_std = model.tok_emb.weight.std().item()
        if not 0.015 < emb_std < 0.025:
            raise AssertionError(f"embedding std {emb_std:.4f}; GPT-2's init uses 0.02")
        idx = torch.randint(0, config.vocab_size, (3, config.block_size), generator=gen)
        logits = model(idx)
        _close(f"GPT logits for {config}", logits, ref(idx))
        loss = ref_model.lm_loss(logits, idx).item()
        if abs(loss - math.log(config.vocab_size)) > 0.1:
            raise AssertionError(f"initial loss {loss:.3f}, expected about ln V = "
                                 f"{math.log(config.vocab_size):.3f}")
        s = rng.randrange(1, config.block_size)
        idx2 = idx.clone()
        idx2[:, s] = (idx2[:, s] + 1) % config.vocab_size
        _close(f"changing token {s} changed the logits before it", model(idx2)[:, :s], logits[:, :s])
        t = rng.randrange(1, config.block_size)
        _close(f"GPT on {t} < block_size tokens", model(idx[:, :t]), logits[:, :t])
        try:
            model(torch.zeros(1, config.block_size + 1, dtype=torch.long))
        except ValueError:
            pass
        else:
            raise AssertionError("GPT must raise ValueError for more than block_size tokens")


def check_lm_loss(lm_loss, seed: int) -> None:
    """Equals F.cross_entropy of logits[:, :-1] against tokens[:, 1:]; float32; stable at 1000x."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for trial in range(5):
        b, t, v = rng.randrange(1, 4), rng.randrange(2, 12), rng.choice([2, 7, 50])
        logits = _randn(gen, b, t, v, scale=1000.0 if trial == 4 else 3.0)
        tokens = torch.randint(0, v, (b, t), generator=gen)
        expected = F.cross_entropy(logits[:, :-1].reshape(-1, v), tokens[:, 1:].reshape(-1))
        got = lm_loss(logits, tokens)
        _close(f"lm_loss for B={b}, T={t}, V={v}{' at 1000x logits' if trial == 4 else ''}",
               got, expected, rtol=1e-5)
        half = lm_loss(logits.bfloat16(), tokens)
        if half.dtype != torch.float32:
            raise AssertionError(f"lm_loss must compute in float32; bfloat16 logits gave {half.dtype}")


# ---------------------------------------------------------------- notebook 3

def check_adamw_update(adamw_update, seed: int) -> None:
    """Step for step equal to torch.optim.AdamW, over random shapes and hyperparameters."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    lr, wd = rng.choice([1e-3, 3e-2, 0.3]), rng.choice([0.0, 0.01, 0.1])
    betas, eps = (rng.choice([0.8, 0.9]), rng.choice([0.95, 0.999])), rng.choice([1e-8, 1e-6])
    params = [_randn(gen, *shape) for shape in ([3], [2, 4], [1, 2, 3])]
    torch_params = [p.clone().requires_grad_() for p in params]
    opt = torch.optim.AdamW(torch_params, lr=lr, betas=betas, eps=eps, weight_decay=wd,
                            foreach=False)
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    for step in range(1, 7):
        for p, tp, (m, v) in zip(params, torch_params, moments):
            g = _randn(gen, *p.shape, scale=rng.choice([1e-3, 1.0, 10.0]))
            tp.grad = g.clone()
            adamw_update(p, g, m, v, step, lr, betas[0], betas[1], eps, wd)
        opt.step()
        for i, (p, tp, (m, v)) in enumerate(zip(params, torch_params, moments)):
            what = f"step {step}, tensor {i} (lr={lr}, betas={betas}, eps={eps}, weight_decay={wd})"
            _close(f"parameter at {what} against torch.optim.AdamW", p, tp.detach(), atol=1e-6,
                   rtol=1e-5)
            _close(f"exp_avg at {what}", m, opt.state[tp]["exp_avg"], atol=1e-7, rtol=1e-5)
            _close(f"exp_avg_sq at {what}", v, opt.state[tp]["exp_avg_sq"], atol=1e-9, rtol=1e-5)


def _lr_oracle(step, max_lr, min_lr, warmup, total):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    return min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))) / 2


def check_lr_at(lr_at, seed: int) -> None:
    """The formula at every step of a random schedule, and a little past its end."""
    rng = random.Random(seed)
    max_lr, warmup = rng.choice([1e-3, 6e-4, 1.0]), rng.randrange(1, 30)
    min_lr, total = max_lr * rng.choice([0.0, 0.1]), warmup + rng.randrange(1, 80)
    for step in range(total + 3):
        got, want = lr_at(step, max_lr, min_lr, warmup, total), _lr_oracle(
            step, max_lr, min_lr, warmup, total)
        if not isinstance(got, (int, float)) or abs(got - want) > 1e-12 * max(1.0, abs(want)):
            raise AssertionError(f"lr_at({step}, max_lr={max_lr}, min_lr={min_lr}, "
                                 f"warmup_steps={warmup}, total_steps={total}) = {got!r}, "
                                 f"expected {want!r}")


def check_clip_grad_norm(clip_grad_norm, seed: int) -> None:
    """Equal to torch.nn.utils.clip_grad_norm_: returned norm and clipped grads; None grads skipped."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for trial in range(5):
        params = [torch.zeros(*shape, requires_grad=True) for shape in
                  rng.sample([(3,), (2, 2), (5, 1), (1,), (4,)], rng.randrange(1, 5))]
        for p in params:
            if rng.random() < 0.8:
                p.grad = _randn(gen, *p.shape, scale=rng.choice([0.01, 1.0, 100.0]))
        twins = [torch.zeros_like(p, requires_grad=True) for p in params]
        for p, q in zip(params, twins):
            q.grad = None if p.grad is None else p.grad.clone()
        max_norm = rng.choice([0.5, 1.0, 1e3])
        expected = torch.nn.utils.clip_grad_norm_(twins, max_norm)
        given = (p for p in params) if trial % 2 else params  # a generator, as model.parameters()
        got = clip_grad_norm(given, max_norm)
        _close(f"clip_grad_norm(max_norm={max_norm}) returned norm", torch.as_tensor(got).float(),
               expected, rtol=1e-5)
        for i, (p, q) in enumerate(zip(params, twins)):
            if (p.grad is None) != (q.grad is None):
                raise AssertionError(f"parameter {i}: a missing gradient must stay missing")
            if p.grad is not None:
                _close(f"gradient {i} after clipping to {max_norm}", p.grad, q.grad, rtol=1e-5)


def _zero_embedding_grad(model) -> None:
    """A stand-in for gradient averaging that is easy to detect: it zeroes one gradient."""
    model.tok_emb.weight.grad.zero_()


def _reference_step(model, optimizer, tokens, lr, clip, amp_dtype=None, reduce_grads=None):
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
        logits = model(tokens)
    loss = ref_model.lm_loss(logits, tokens)
    loss.backward()
    if reduce_grads is not None:
        reduce_grads(model)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return loss.detach(), norm


def _tiny_model(rng: random.Random) -> tuple:
    config = GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16, mlp_hidden=32)
    torch.manual_seed(rng.randrange(1000))
    model = ref_model.GPT(config)
    return config, model, AdamW(param_groups(model, 0.1), betas=(0.9, 0.95))


def _same_params(what: str, model, expected, atol: float = 1e-6) -> None:
    for (name, p), q in zip(model.named_parameters(), expected.parameters()):
        _close(f"{what}: parameter {name}", p, q, atol=atol, rtol=1e-5)


def check_train_step(train_step, seed: int) -> None:
    """One step equals the reference (fp32, bf16 autocast, with reduce_grads); overfits a batch."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    config, model, optimizer = _tiny_model(rng)
    twin = copy.deepcopy(model)
    twin_opt = AdamW(param_groups(twin, 0.1), betas=(0.9, 0.95))
    tokens = torch.randint(0, config.vocab_size, (4, config.block_size), generator=gen)
    cases = [{}, {"reduce_grads": _zero_embedding_grad}, {"amp_dtype": torch.bfloat16}]
    for kwargs in cases:
        lr, clip = rng.choice([1e-3, 1e-2]), rng.choice([0.05, 1.0])
        loss, norm = train_step(model, optimizer, tokens, lr, clip, **kwargs)
        want_loss, want_norm = _reference_step(twin, twin_opt, tokens, lr, clip, **kwargs)
        what = f"train_step(lr={lr}, grad_clip={clip}, {', '.join(kwargs) or 'float32'})"
        for name, value in (("loss", loss), ("grad_norm", norm)):
            if not isinstance(value, torch.Tensor) or value.requires_grad or value.ndim:
                raise AssertionError(f"{what}: {name} must be a detached 0-dim tensor, got {value!r}")
        atol = 1e-6 if "amp_dtype" not in kwargs else 1e-4
        _close(f"{what}: loss", loss, want_loss, atol=atol)
        _close(f"{what}: grad_norm (before clipping)", norm, want_norm, atol=atol, rtol=1e-4)
        _same_params(what, model, twin, atol=1e-6 if "amp_dtype" not in kwargs else 1e-4)
        if any(group["lr"] != lr for group in optimizer.param_groups):
            raise AssertionError(f"{what}: set every param group's lr to {lr}")
    first = float(_loss_of(model, tokens))
    for _ in range(12):
        loss, _ = train_step(model, optimizer, tokens, 3e-2, 1.0)
    if float(loss) > 0.5 * first:
        raise AssertionError(f"12 steps on one batch took the loss from {first:.3f} to "
                             f"{float(loss):.3f}; expected it to halve")


def _loss_of(model, tokens) -> torch.Tensor:
    """The reference loss of ``model`` on ``tokens``, without gradients."""
    with torch.no_grad():
        return ref_model.lm_loss(model(tokens), tokens)


def check_read_shard(read_shard, seed: int) -> None:
    """Read-only memmap of the stored dtype with the written values; malformed files raise ValueError."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(3):
            top = rng.choice([2**8, 2**16, 2**20])
            tokens = np.array([rng.randrange(top) for _ in range(rng.randrange(1, 3000))])
            path = ref_data.write_shard(Path(tmp) / f"s{i}.bin", tokens)
            got = read_shard(path)
            want_dtype = np.uint16 if tokens.max() < 2**16 else np.uint32
            if not isinstance(got, np.memmap):
                raise AssertionError(f"read_shard must return an np.memmap, got {type(got).__name__}")
            if got.dtype != want_dtype or got.flags.writeable:
                raise AssertionError(f"a shard of ids below {top} must map read-only as "
                                     f"{np.dtype(want_dtype)}, got {got.dtype} "
                                     f"(writeable={got.flags.writeable})")
            if not np.array_equal(np.asarray(got), tokens):
                raise AssertionError(f"read_shard gave other tokens than were written "
                                     f"(first {np.asarray(got)[:5]}, expected {tokens[:5]})")
            del got
        good = path.read_bytes()
        header = np.frombuffer(good[:32], dtype="<u8").copy()
        broken = {"a wrong magic number": (0, 12345), "a newer version": (1, 99),
                  "3 bytes per token": (2, 3)}
        for what, (field, value) in broken.items():
            bad = header.copy()
            bad[field] = value
            _expect_value_error(read_shard, Path(tmp) / "bad.bin", bad.tobytes() + good[32:], what)
        _expect_value_error(read_shard, Path(tmp) / "bad.bin", good[:-2], "a truncated shard")
        _expect_value_error(read_shard, Path(tmp) / "bad.bin", good + b"\0\0\0\0", "extra bytes")


def _expect_value_error(read_shard, path: Path, content: bytes, what: str) -> None:
    path.write_bytes(content)
    try:
        read_shard(path)
    except ValueError:
        return
    except Exception as err:  # noqa: BLE001 - any other error is the finding
        raise AssertionError(f"read_shard of a file with {what} must raise ValueError, raised "
                             f"{type(err).__name__}: {err}") from None
    raise AssertionError(f"read_shard of a file with {what} must raise ValueError")


def check_sample_batch(sample_batch, seed: int) -> None:
    """Windows inside one shard, uniform over all windows, a function of (seed, step), ranks split it."""
    rng = random.Random(seed)
    block = rng.choice([4, 8])
    lengths = [block + rng.randrange(0, 6), rng.randrange(60, 100), block - 1]
    values = np.random.default_rng(seed).permutation(sum(lengths)) + rng.choice([0, 70_000])
    dtype = np.uint16 if values.max() < 2**16 else np.uint32
    shards, where, start = [], {}, 0
    for s, n in enumerate(lengths):
        shards.append(values[start:start + n].astype(dtype))
        where.update({int(v): (s, i) for i, v in enumerate(shards[-1])})
        start += n
    batch_seed, step = rng.randrange(1000), rng.randrange(1000)
    batch = sample_batch(shards, 2000, block, batch_seed, step)
    if not isinstance(batch, torch.Tensor) or batch.dtype != torch.int64 or batch.shape != (2000, block):
        raise AssertionError(f"sample_batch must return an int64 tensor of shape (2000, {block}), "
                             f"got {getattr(batch, 'dtype', type(batch))} "
                             f"{tuple(getattr(batch, 'shape', ()))}")
    firsts = set()
    for row in batch.tolist():
        s, i = where.get(row[0], (None, None))
        if s is None or shards[s][i:i + block].tolist() != row:
            raise AssertionError(f"row {row} is not a window of consecutive tokens of one shard")
        firsts.add((s, i))
    small = sum(s == 0 for s, _ in firsts)
    if small != lengths[0] - block + 1:
        raise AssertionError(f"2000 windows reached {small} of the {lengths[0] - block + 1} windows "
                             "of the small shard: every window, first and last, must be drawn")
    share = sum(s == 0 for s, _ in (where[r] for r in batch[:, 0].tolist())) / len(batch)
    if share > 0.2:
        raise AssertionError(f"{share:.0%} of windows came from a shard that holds "
                             f"{(lengths[0] - block + 1) / (lengths[0] + lengths[1] - 2 * block + 2):.0%}"
                             " of all windows: draw windows, not shards, uniformly")
    if not torch.equal(batch, sample_batch(shards, 2000, block, batch_seed, step)):
        raise AssertionError("sample_batch is not a function of (seed, step): two calls differ")
    if torch.equal(batch[:8], sample_batch(shards, 8, block, batch_seed, step + 1)):
        raise AssertionError("the next step gave the same batch")
    world = rng.choice([2, 3])
    whole = sample_batch(shards, 2 * world, block, batch_seed, step)
    parts = [sample_batch(shards, 2, block, batch_seed, step, rank=r, world_size=world)
             for r in range(world)]
    if not torch.equal(torch.cat(parts), whole):
        raise AssertionError(f"the {world} ranks' batches of 2 must be the rows of the global "
                             f"batch of {2 * world}, in rank order")


def check_checkpoint(checkpoint_state, restore_state, seed: int) -> None:
    """Save at step k through safetensors + JSON, restore, continue: bit-identical to no break."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    config, model, optimizer = _tiny_model(rng)
    batches = [torch.randint(0, config.vocab_size, (2, config.block_size), generator=gen)
               for _ in range(6)]
    k = rng.randrange(1, 5)
    for tokens in batches[:k]:
        ref_train_step(model, optimizer, tokens, 1e-2, 1.0)
    tensors, meta = checkpoint_state(model, optimizer, k)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            save_file(tensors, Path(tmp) / "ckpt.safetensors")
            text = json.dumps(meta)
        except Exception as err:  # noqa: BLE001 - the finding is that it cannot be saved
            raise AssertionError(f"checkpoint_state's output cannot be saved "
                                 f"({type(err).__name__}: {err})") from None
        loaded, meta = load_file(Path(tmp) / "ckpt.safetensors"), json.loads(text)
    if "model.lm_head.weight" in loaded or "model.tok_emb.weight" not in loaded:
        raise AssertionError(f"weights go under 'model.<name>', the tied matrix once; got "
                             f"{sorted(loaded)[:6]}")
    for tokens in batches[k:]:
        ref_train_step(model, optimizer, tokens, 1e-2, 1.0)
    torch.manual_seed(rng.randrange(1000, 2000))
    fresh = ref_model.GPT(config)
    fresh_opt = AdamW(param_groups(fresh, 0.1), betas=(0.9, 0.95))
    step = restore_state(fresh, fresh_opt, loaded, meta)
    if step != k:
        raise AssertionError(f"restore_state returned step {step!r}, the checkpoint was at {k}")
    if fresh.lm_head.weight is not fresh.tok_emb.weight:
        raise AssertionError("restore_state broke the weight tying: copy into the parameters")
    for tokens in batches[k:]:
        ref_train_step(fresh, fresh_opt, tokens, 1e-2, 1.0)
    for (name, p), q in zip(fresh.named_parameters(), model.parameters()):
        if not torch.equal(p, q):
            raise AssertionError(f"resumed at step {k}, parameter {name} differs from training "
                                 f"straight through by {(p - q).abs().max().item():.3g}: "
                                 "a checkpoint must hold the AdamW moments and step counts")
    other = ref_model.GPT(GPTConfig(**{**config.to_dict(), "n_embd": 32}))
    try:
        restore_state(other, None, loaded, meta)
    except ValueError:
        pass
    else:
        raise AssertionError("restore_state must raise ValueError for a model of another config")


# ---------------------------------------------------------------- notebook 4

def _ddp_worker(rank, world, folder, allreduce_gradients, config, seed, tokens):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    try:
        torch.manual_seed(seed)
        model = ref_model.GPT(config)
        model.norm.weight.requires_grad_(False)
        rows = tokens.chunk(world)[rank]
        ref_model.lm_loss(model(rows), rows).backward()
        allreduce_gradients(model)
        np.savez(f"{folder}/grads{rank}.npz", **{n: p.grad.numpy() for n, p in
                                                 model.named_parameters() if p.grad is not None})
    finally:
        dist.destroy_process_group()


def check_allreduce_gradients(allreduce_gradients, seed: int) -> None:
    """Two gloo processes, half a batch each: afterwards both hold the whole batch's gradients."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    config = random_config(rng, n_layer=1)
    world, model_seed = 2, rng.randrange(1000)
    tokens = torch.randint(0, config.vocab_size, (2 * world, config.block_size), generator=gen)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            mp.start_processes(_ddp_worker, nprocs=world, start_method="fork", args=(
                world, tmp, allreduce_gradients, config, model_seed, tokens))
        except mp.ProcessRaisedException as err:
            raise AssertionError(f"a process failed:\n{err}") from None
        except mp.ProcessExitedException as err:
            raise AssertionError(f"a process died: {err}") from None
        grads = {r: dict(np.load(f"{tmp}/grads{r}.npz")) for r in range(world)}
    torch.manual_seed(model_seed)
    single = ref_model.GPT(config)
    single.norm.weight.requires_grad_(False)
    ref_model.lm_loss(single(tokens), tokens).backward()
    expected = {n: p.grad for n, p in single.named_parameters() if p.grad is not None}
    for rank, got in grads.items():
        if set(got) != set(expected):
            raise AssertionError(f"rank {rank} has gradients for {sorted(got)}, expected "
                                 f"{sorted(expected)} (a parameter without one must keep None)")
        for name, g in got.items():
            _close(f"rank {rank}'s gradient of {name} against one process on the whole batch",
                   torch.from_numpy(g), expected[name], atol=1e-6, rtol=1e-4)
            if not np.array_equal(g, grads[1 - rank][name]):
                raise AssertionError(f"the ranks hold different gradients for {name}")


def _balance_oracle(probs: torch.Tensor, experts: torch.Tensor, n_expert: int) -> torch.Tensor:
    n, k = experts.shape
    share = F.one_hot(experts, n_expert).sum(dim=(0, 1)).double() / (n * k)
    return n_expert * sum(share[i] * probs[:, i].double().mean() for i in range(n_expert))


def check_load_balancing_loss(load_balancing_loss, seed: int) -> None:
    """E * sum_i f_i P_i against a one-hot oracle; 1 for even use, E for total collapse."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for trial in range(5):
        n, e = rng.randrange(1, 40), rng.choice([2, 3, 8])
        k = rng.randrange(1, e + 1)
        probs = _randn(gen, n, e, scale=rng.choice([0.1, 3.0])).softmax(dim=-1)
        experts = probs.topk(k, dim=-1).indices if trial % 2 else torch.stack(
            [torch.randperm(e, generator=gen)[:k] for _ in range(n)])
        got = load_balancing_loss(probs, experts, e)
        _close(f"load_balancing_loss for N={n}, E={e}, k={k}", got,
               _balance_oracle(probs, experts, e).float(), atol=1e-6)


def _moe_oracle(moe, x: torch.Tensor, top_k: int, aux_weight: float) -> tuple:
    """Every expert on every token, masked by the routing; the aux loss added to the output's loss."""
    flat = x.reshape(-1, x.shape[-1])
    probs = (flat @ moe.router.weight.T).softmax(dim=-1)
    weights, experts = probs.topk(top_k, dim=-1)
    gate = torch.zeros_like(probs).scatter(1, experts, weights)
    outs = []
    for expert in moe.experts:
        w = expert.gate_up.weight
        h = w.shape[0] // 2
        gate_x, up = flat @ w[:h].T, flat @ w[h:].T
        outs.append((F.silu(gate_x) * up) @ expert.down.weight.T)
    y = (torch.stack(outs, dim=1) * gate[..., None]).sum(dim=1)
    aux = _balance_oracle(probs, experts, len(moe.experts)).float()
    return y.view_as(x), aux, experts, probs


def check_moe(MoE, seed: int) -> None:
    """Exactly k distinct experts per token; output, aux loss and gradients equal a dense oracle."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(2):
        e = rng.choice([2, 3, 5])
        config, moe = _built(MoE, rng, n_expert=e, top_k=rng.randrange(1, min(e, 3) + 1),
                             aux_loss_weight=rng.choice([0.01, 1.0]))
        _same_model("MoE", moe, RefMoE(config))
        x = _randn(gen, 2, rng.randrange(1, 6), config.n_embd).requires_grad_()
        want_y, want_aux, want_experts, want_probs = _moe_oracle(moe, x, config.top_k,
                                                                 config.aux_loss_weight)
        weights, experts, probs = moe.route(x.detach().flatten(0, 1))
        _close("route: probabilities", probs, want_probs.detach())
        if experts.shape != want_experts.shape or any(
                len(set(row)) != config.top_k for row in experts.tolist()):
            raise AssertionError(f"route must pick {config.top_k} different experts per token, "
                                 f"got {experts.tolist()[:4]}")
        if not torch.equal(experts.sort(dim=-1).values, want_experts.sort(dim=-1).values):
            raise AssertionError("route must pick the experts of the largest probabilities")
        _close("route: weights (the chosen experts' probabilities)",
               weights.gather(1, experts.argsort(dim=-1)),
               want_probs.detach().gather(1, want_experts).gather(1, want_experts.argsort(dim=-1)))
        y = moe(x)
        _close(f"MoE output (E={e}, k={config.top_k}) against every expert on every token", y,
               want_y.detach())
        _close("MoE.aux_loss (the load-balancing loss, detached)", moe.aux_loss, want_aux.detach())
        g = _randn(gen, *x.shape)
        (want_y * g).sum().add(config.aux_loss_weight * want_aux).backward()
        want_grads = {n: p.grad.clone() for n, p in moe.named_parameters()}
        want_x = x.grad.clone()
        moe.zero_grad()
        x.grad = None
        (moe(x) * g).sum().backward()
        if moe.router.weight.grad is None:
            raise AssertionError("no gradient reached the router")
        for name, p in moe.named_parameters():  # an expert that got no token may have none
            got = torch.zeros_like(p) if p.grad is None else p.grad
            _close(f"gradient of {name} (the aux loss must reach the router through "
                   "attach_aux_loss)", got, want_grads[name], atol=1e-5)
        _close("gradient of the input", x.grad, want_x, atol=1e-5)
