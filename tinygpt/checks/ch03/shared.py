"""What chapter 3's checks share: tolerances, tensor comparison, random configs and models.

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
