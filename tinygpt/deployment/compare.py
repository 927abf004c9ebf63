"""What each quantisation scheme costs and saves: bits, bytes and perplexity, side by side.

Hand-written for chapter 6 (its page and ``python -m tinygpt.quantize compare`` print
this table). Each scheme is applied to a fresh copy of one float model: fp32 (the
model as trained), bf16 (weights and arithmetic in bfloat16), int8 per channel, and int4
at group sizes 128, 64 and 32, asymmetric. Perplexity is ``exp`` of chapter 3's
``estimate_loss`` on the validation shards, on the same fixed batches for every scheme,
so the differences are the schemes' alone. Bytes are :func:`weight_bytes` in memory and
the files that each format's saver writes on disk.
"""
from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tinygpt.deployment.quantized import QuantLinear, quantize_model, save_quantized, weight_bytes
from tinygpt.pretraining.checkpoint import save_checkpoint
from tinygpt.pretraining.model import GPT
from tinygpt.pretraining.trainer import estimate_loss

# name -> quantize_model's arguments (None: a float format)
SCHEMES: dict[str, dict | None] = {
    "fp32": None, "bf16": None, "int8": {"bits": 8},
    "int4 g128": {"bits": 4, "group_size": 128}, "int4 g64": {"bits": 4, "group_size": 64},
    "int4 g32": {"bits": 4, "group_size": 32},
}


def variant(model: GPT, scheme: str) -> GPT:
    """A copy of the float ``model`` in ``scheme`` (a key of :data:`SCHEMES`)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    out = copy.deepcopy(model).eval()
    if scheme == "bf16":
        return out.to(torch.bfloat16)
    return out if SCHEMES[scheme] is None else quantize_model(out, **SCHEMES[scheme])


def linear_bits(model: GPT) -> float:
    """Bits per weight of the linear layers (integers, scales and zeros over the weights they code)."""
    bits = weights = 0
    for name, m in model.named_modules():
        if isinstance(m, QuantLinear):
            bits += 8 * sum(b.numel() * b.element_size() for b in m.buffers())
            weights += m.in_features * m.out_features
        elif isinstance(m, torch.nn.Linear) and name != "lm_head":
            bits += 8 * m.weight.numel() * m.weight.element_size()
            weights += m.weight.numel()
    return bits / weights


def disk_bytes(model: GPT) -> int:
    """Bytes of the folder its format's saver writes (a checkpoint, or a quantised folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        if any(isinstance(m, QuantLinear) for m in model.modules()):
            save_quantized(model, tmp)
        else:
            save_checkpoint(tmp, model)
        return sum(p.stat().st_size for p in Path(tmp).iterdir())


def compare(model: GPT, val_shards: list, schemes: list[str] | None = None, batches: int = 16,
            batch_size: int = 16, progress: bool = False) -> list[dict]:
    """A row per scheme: bits per linear weight, bytes in memory and on disk, validation
    loss and perplexity, and the perplexity's change from fp32 (the first row's) in %."""
    rows = []
    names = schemes or list(SCHEMES)
    for scheme in tqdm(names, desc="schemes", disable=not progress):
        m = variant(model, scheme)
        loss = estimate_loss(m, val_shards, batches, batch_size, "cpu")
        rows.append({"scheme": scheme, "linear_bits": linear_bits(m),
                     "memory_bytes": weight_bytes(m), "disk_bytes": disk_bytes(m),
                     "loss": loss, "perplexity": math.exp(loss)})
    base = rows[0]["perplexity"]
    for row in rows:
        row["perplexity_change_pct"] = 100 * (row["perplexity"] / base - 1)
    return rows


def table(rows: list[dict]) -> str:
    """The rows as plain text."""
    lines = [f"{'scheme':<11}{'bits/w':>7}{'memory':>10}{'disk':>10}{'perplexity':>12}{'change':>9}"]
    lines += [f"{r['scheme']:<11}{r['linear_bits']:>7.2f}{r['memory_bytes'] / 1e6:>8.2f}MB"
              f"{r['disk_bytes'] / 1e6:>8.2f}MB{r['perplexity']:>12.3f}"
              f"{r['perplexity_change_pct']:>+8.2f}%" for r in rows]
    return "\n".join(lines)
