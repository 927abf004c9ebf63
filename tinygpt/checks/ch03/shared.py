"""What chapter 3's checks share: tolerances, tensor comparison, random configs and models,
packed rows (several sequences in one, for the attention mask), and calls with an option.

Part of ``tinygpt.checks.ch03``.
"""
from __future__ import annotations

import random

import torch

from tinygpt.pretraining.config import GPTConfig

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 5e-2}


def close(what: str, got, expected: torch.Tensor, atol: float | None = None,
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


def randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
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


def built(cls, rng: random.Random, **fixed):
    """``cls(config)`` for a random config, its weights drawn from a seed taken from ``rng``."""
    config = random_config(rng, **fixed)
    torch.manual_seed(rng.randrange(1000))
    return config, cls(config)


def same_model(what: str, learner, reference) -> None:
    """Load the learner's weights into the reference: the names and shapes must match."""
    try:
        reference.load_state_dict(learner.state_dict())
    except RuntimeError as err:
        raise AssertionError(f"{what}: its weights do not match the reference's: "
                             f"{str(err).splitlines()[0]}") from None


def packed_rows(rng: random.Random, b: int, t: int) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Rows of ``t`` positions cut into 1-3 consecutive sequences each: the mask (B, T, T),
    True where both positions are in the same sequence; the positions within each
    sequence (B, T); and each row's sequence spans [(start, end), ...]."""
    mask = torch.zeros(b, t, t, dtype=torch.bool)
    positions = torch.zeros(b, t, dtype=torch.long)
    spans = []
    for row in range(b):
        cuts = sorted(rng.sample(range(1, t), min(rng.randrange(0, 3), t - 1)))
        row_spans = list(zip([0] + cuts, cuts + [t]))
        for start, end in row_spans:
            mask[row, start:end, start:end] = True
            positions[row, start:end] = torch.arange(end - start)
        spans.append(row_spans)
    return mask, positions, spans


def with_option(what: str, option: str, call):
    """``call()``; a TypeError that names ``option`` (a function written without it) fails
    the check with that said, instead of crashing it."""
    try:
        return call()
    except TypeError as error:
        if option not in str(error):
            raise
        raise AssertionError(f"{what}: the {option!r} option is missing ({error})") from None
