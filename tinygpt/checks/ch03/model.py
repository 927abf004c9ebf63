"""Chapter 3's checks for notebook 2 (02_model): RMSNorm, SwiGLU, the block, the GPT, the loss.

Part of ``tinygpt.checks.ch03`` (its docstring says how the checks work).
"""
from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from tinygpt.checks.common import raises_value_error
from tinygpt.checks.ch03.shared import (TOLERANCE, built, close, packed_rows, randn, same_model,
                                        with_option)
from tinygpt.pretraining import model as ref_model


def check_rmsnorm(RMSNorm, seed: int) -> None:
    """Equals F.rms_norm with the learned gain; keeps bfloat16 in bfloat16; large inputs are fine."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for trial in range(4):
        dim, eps = rng.choice([1, 3, 8, 64]), rng.choice([1e-5, 1e-6, 0.1])
        norm = RMSNorm(dim, eps)
        weight = randn(gen, dim)
        norm.load_state_dict({"weight": weight})
        x = randn(gen, rng.randrange(1, 3), rng.randrange(1, 5), dim,
                   scale=1e4 if trial == 3 else 1.0)
        close(f"RMSNorm({dim}, eps={eps}) against F.rms_norm", norm(x),
               F.rms_norm(x, (dim,), weight, eps), rtol=1e-5)
        half = norm(x.bfloat16())
        if half.dtype != torch.bfloat16:
            raise AssertionError(f"RMSNorm must return the input's dtype: bfloat16 in, {half.dtype} out")
        close("RMSNorm on bfloat16 input", half.float(),
               F.rms_norm(x.bfloat16().float(), (dim,), weight, eps),
               atol=TOLERANCE[torch.bfloat16], rtol=2e-2)


def check_swiglu(SwiGLU, seed: int) -> None:
    """Weights gate_up (gate first) and down; down(silu(gate x) * up x)."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(3):
        config, mlp = built(SwiGLU, rng)
        shapes = {k: tuple(v.shape) for k, v in mlp.state_dict().items()}
        want = {"gate_up.weight": (2 * config.hidden, config.n_embd),
                "down.weight": (config.n_embd, config.hidden)}
        if shapes != want:
            raise AssertionError(f"weights for n_embd={config.n_embd}, hidden={config.hidden}: "
                                 f"{shapes}, expected {want}")
        x = randn(gen, 2, rng.randrange(1, 5), config.n_embd)
        w = mlp.gate_up.weight.detach()
        gate, up = x @ w[:config.hidden].T, x @ w[config.hidden:].T
        expected = (gate * torch.sigmoid(gate) * up) @ mlp.down.weight.detach().T
        close("SwiGLU against down(silu(gate x) * up x)", mlp(x), expected)


def check_block(Block, seed: int) -> None:
    """Pre-norm residual block equal to the reference with the same weights (dense and MoE); causal."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for trial in range(3):
        experts = {"n_expert": 3, "top_k": 2} if trial == 2 else {}
        config, block = built(Block, rng, **experts)
        ref = ref_model.Block(config)
        same_model(f"Block({'MoE' if experts else 'dense'})", block, ref)
        t = rng.randrange(2, config.block_size + 1)
        cos, sin = ref_model.rope_cache(config.head_dim, t)
        x = randn(gen, 2, t, config.n_embd)
        got = block(x, cos, sin)
        close(f"Block ({'MoE' if experts else 'dense'} MLP) against the reference", got,
               ref(x, cos, sin))
        x2 = x.clone()
        x2[:, -1] += 1.0
        close("changing the last position changed earlier outputs",
               block(x2, cos, sin)[:, :-1], got[:, :-1])
        mask, _, spans = packed_rows(rng, 2, t)
        what = f"Block(..., mask=...) with sequences {spans}"
        close(f"{what} against the reference", with_option(
            what, "mask", lambda: block(x, cos, sin, mask=mask)), ref(x, cos, sin, mask=mask))


def check_gpt(GPT, seed: int) -> None:
    """Tied weights, GPT-2 init, loss near ln V, equal to the reference, causal, length checked."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(2):
        config, model = built(GPT, rng)
        if model.lm_head.weight is not model.tok_emb.weight:
            raise AssertionError("lm_head.weight must be the same Parameter as tok_emb.weight")
        ref = ref_model.GPT(config)
        same_model("GPT", model, ref)
        n_params = sum(p.numel() for p in model.parameters())
        n_ref = sum(p.numel() for p in ref.parameters())
        if n_params != n_ref:
            raise AssertionError(f"GPT has {n_params} parameters, the reference {n_ref}")
        emb_std = model.tok_emb.weight.std().item()
        if not 0.015 < emb_std < 0.025:
            raise AssertionError(f"embedding std {emb_std:.4f}; GPT-2's init uses 0.02")
        idx = torch.randint(0, config.vocab_size, (3, config.block_size), generator=gen)
        logits = model(idx)
        close(f"GPT logits for {config}", logits, ref(idx))
        loss = ref_model.lm_loss(logits, idx).item()
        if abs(loss - math.log(config.vocab_size)) > 0.1:
            raise AssertionError(f"initial loss {loss:.3f}, expected about ln V = "
                                 f"{math.log(config.vocab_size):.3f}")
        s = rng.randrange(1, config.block_size)
        idx2 = idx.clone()
        idx2[:, s] = (idx2[:, s] + 1) % config.vocab_size
        close(f"changing token {s} changed the logits before it", model(idx2)[:, :s], logits[:, :s])
        t = rng.randrange(1, config.block_size)
        close(f"GPT on {t} < block_size tokens", model(idx[:, :t]), logits[:, :t])
        raises_value_error("GPT on more than block_size tokens",
                           lambda: model(torch.zeros(1, config.block_size + 1, dtype=torch.long)))
        mask, positions, spans = packed_rows(rng, 3, config.block_size)
        what = f"GPT(idx, positions=..., mask=...) with sequences {spans}"
        packed = with_option(what, "positions", lambda: model(idx, positions=positions, mask=mask))
        for row, row_spans in enumerate(spans):
            for start, end in row_spans:
                close(f"{what}: the logits of the sequence at {start}:{end} of row {row} "
                      "against the sequence alone", packed[row:row + 1, start:end],
                      model(idx[row:row + 1, start:end]))
        raises_value_error("GPT with a position at block_size", lambda: model(
            idx, positions=torch.full_like(idx, config.block_size), mask=mask))


def check_lm_loss(lm_loss, seed: int) -> None:
    """Equals F.cross_entropy of logits[:, :-1] against tokens[:, 1:]; float32; stable at 1000x."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for trial in range(5):
        b, t, v = rng.randrange(1, 4), rng.randrange(2, 12), rng.choice([2, 7, 50])
        logits = randn(gen, b, t, v, scale=1000.0 if trial == 4 else 3.0)
        tokens = torch.randint(0, v, (b, t), generator=gen)
        expected = F.cross_entropy(logits[:, :-1].reshape(-1, v), tokens[:, 1:].reshape(-1))
        got = lm_loss(logits, tokens)
        close(f"lm_loss for B={b}, T={t}, V={v}{' at 1000x logits' if trial == 4 else ''}",
               got, expected, rtol=1e-5)
        half = lm_loss(logits.bfloat16(), tokens)
        if half.dtype != torch.float32:
            raise AssertionError(f"lm_loss must compute in float32; bfloat16 logits gave {half.dtype}")
