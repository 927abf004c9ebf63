"""Chapter 3's checks for notebook 1 (01_attention): RoPE, causal attention, self-attention.

Part of ``tinygpt.checks.ch03`` (its docstring says how the checks work).
"""
from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from tinygpt.checks.ch03.shared import TOLERANCE, built, close, packed_rows, randn, with_option
from tinygpt.pretraining import model as ref_model


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
        close(f"rope_cache({d}, {t}, {base}) cos", cos, angles.cos().float())
        close(f"rope_cache({d}, {t}, {base}) sin", sin, angles.sin().float())
        x = randn(gen, rng.randrange(1, 3), rng.randrange(1, 4), t, d)
        before = x.clone()
        got = apply_rope(x, cos, sin)
        close(f"apply_rope on x of shape {tuple(x.shape)} (base {base}) against complex "
               "rotation of pairs (i, i + D/2)", got, _rope_oracle(x, base).float())
        if not torch.equal(x, before):
            raise AssertionError("apply_rope changed its input")
        half = apply_rope(x.bfloat16(), cos, sin)
        if half.dtype != torch.bfloat16:
            raise AssertionError(f"apply_rope must keep the input dtype: bfloat16 in, {half.dtype} out")
        close("apply_rope on bfloat16 input", half.float(), got, atol=TOLERANCE[torch.bfloat16])
    # relative positions: <rope(q)_m, rope(k)_n> depends on m - n only
    d, t = 16, 24
    cos, sin = rope_cache(d, t)
    q, k = randn(gen, d), randn(gen, d)
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
        q = randn(gen, b, t, hkv * groups, d, scale=scale).transpose(1, 2)  # non-contiguous
        k, v = randn(gen, b, hkv, t, d), randn(gen, b, hkv, t, d)
        got = causal_attention(q, k, v)
        expected = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        close(f"causal_attention with B={b}, H={hkv * groups}, Hkv={hkv}, T={t}, D={d}, "
               f"scores x{scale:g}, against F.scaled_dot_product_attention", got, expected,
               atol=1e-4 if scale > 1 else 1e-5)
        if t > 1:
            s = rng.randrange(1, t)
            k2, v2 = k.clone(), v.clone()
            k2[:, :, s:] = randn(gen, b, hkv, t - s, d)
            v2[:, :, s:] = randn(gen, b, hkv, t - s, d)
            close(f"changing keys and values from position {s} on changed earlier outputs",
                   causal_attention(q, k2, v2)[:, :, :s], got[:, :, :s])
        _check_weights(f"causal_attention(..., return_weights=True) with H={hkv * groups}, "
                       f"Hkv={hkv}, T={t}", lambda: causal_attention(q, k, v, return_weights=True),
                       got, _weights_oracle(q, k))
        mask, _, spans = packed_rows(rng, b, t)
        what = f"causal_attention(..., mask=...) with sequences {spans} in T={t}"
        masked = with_option(what, "mask", lambda: causal_attention(q, k, v, mask=mask))
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        close(f"{what}, against F.scaled_dot_product_attention with that mask", masked,
              F.scaled_dot_product_attention(q, k, v, attn_mask=(mask & causal)[:, None],
                                             enable_gqa=True), atol=1e-4 if scale > 1 else 1e-5)
        for row, row_spans in enumerate(spans):
            for start, end in row_spans:
                alone = F.scaled_dot_product_attention(
                    q[row:row + 1, :, start:end], k[row:row + 1, :, start:end],
                    v[row:row + 1, :, start:end], is_causal=True, enable_gqa=True)
                close(f"{what}: the sequence at {start}:{end} of row {row} against it alone",
                      masked[row:row + 1, :, start:end], alone, atol=1e-4 if scale > 1 else 1e-5)


def _weights_oracle(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(D) + mask) with each key head repeated for its group of queries."""
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1).double()
    t = q.shape[-2]
    mask = torch.full((t, t), float("-inf"), dtype=torch.float64).triu(1)
    return torch.softmax(q.double() @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + mask, -1)


def _check_weights(what: str, call, out: torch.Tensor, expected: torch.Tensor) -> None:
    """``call()`` returns (output equal to ``out``, weights equal to ``expected``)."""
    returned = with_option(what, "return_weights", call)
    if not (isinstance(returned, tuple) and len(returned) == 2):
        raise AssertionError(f"{what} must return a pair (output, weights), got {type(returned).__name__}")
    got, weights = returned
    close(f"{what}: the output", got, out, atol=1e-5)
    if tuple(weights.shape) != tuple(expected.shape):
        raise AssertionError(f"{what}: weights of shape {tuple(weights.shape)}, expected "
                             f"{tuple(expected.shape)} (B, H, T, T)")
    close(f"{what}: the weights against softmax(q k^T / sqrt(D) + causal mask)",
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
        config, attn = built(CausalSelfAttention, rng)
        h, hkv, d = config.n_head, config.kv_heads, config.head_dim
        shapes = {k: tuple(v.shape) for k, v in attn.state_dict().items()}
        want = {"qkv.weight": ((h + 2 * hkv) * d, config.n_embd), "out.weight": (config.n_embd, h * d)}
        if shapes != want:
            raise AssertionError(f"weights for {config}: {shapes}, expected {want}")
        t = rng.randrange(1, config.block_size + 1)
        cos, sin = ref_model.rope_cache(d, t)
        x = randn(gen, rng.randrange(1, 3), t, config.n_embd)
        expected = _attention_oracle(attn.qkv.weight.detach(), attn.out.weight.detach(), x,
                                     cos, sin, h, hkv)
        for use_sdpa in (True, False):
            attn.use_sdpa = use_sdpa
            got = attn(x, cos, sin)
            close(f"CausalSelfAttention (H={h}, Hkv={hkv}, D={d}, T={t}, use_sdpa={use_sdpa}) "
                   "against attention computed head by head", got, expected)
        if t > 1:
            s = rng.randrange(1, t)
            x2 = x.clone()
            x2[:, s:] = randn(gen, x.shape[0], t - s, config.n_embd)
            close(f"changing tokens from position {s} on changed earlier outputs",
                   attn(x2, cos, sin)[:, :s], got[:, :s])
        attn.use_sdpa = rng.random() < 0.5
        q, k, _ = (x @ attn.qkv.weight.detach().T).split([h * d, hkv * d, hkv * d], dim=-1)
        q, k = (_rope_oracle(z.unflatten(-1, (-1, d)).transpose(1, 2), 10000.0) for z in (q, k))
        _check_weights(f"CausalSelfAttention(..., return_weights=True) (H={h}, Hkv={hkv}, T={t}, "
                       f"use_sdpa={attn.use_sdpa})", lambda: attn(x, cos, sin, return_weights=True),
                       expected, _weights_oracle(q, k))
        mask, positions, spans = packed_rows(rng, x.shape[0], t)
        row_cos, row_sin = cos[positions][:, None], sin[positions][:, None]
        for use_sdpa in (True, False):
            attn.use_sdpa = use_sdpa
            what = (f"CausalSelfAttention(..., mask=...) with sequences {spans}, positions "
                    f"restarting in each, cos/sin of shape (B, 1, T, D/2), use_sdpa={use_sdpa}")
            packed = with_option(what, "mask", lambda: attn(x, row_cos, row_sin, mask=mask))
            for row, row_spans in enumerate(spans):
                for start, end in row_spans:
                    alone = _attention_oracle(attn.qkv.weight.detach(), attn.out.weight.detach(),
                                              x[row:row + 1, start:end], cos[:end - start],
                                              sin[:end - start], h, hkv)
                    close(f"{what}: the sequence at {start}:{end} of row {row} against it alone",
                          packed[row:row + 1, start:end], alone)
