"""What a trained model attends to: the attention weights of every layer, read from the model.

Infrastructure for chapter 3's book page (and later chapters that look inside a model),
written here rather than graded. ``attention_maps`` runs the model once and, with a
forward hook on each layer's attention, asks that layer again for its weights
(``CausalSelfAttention(..., return_weights=True)``), so the maps always come from the
model's own code: nothing of the attention is written twice.
"""
from __future__ import annotations

import torch

from tinygpt.pretraining.model import GPT


@torch.no_grad()
def attention_maps(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    """The softmax weights of every layer and head for token ids (B, T): (B, layers, heads, T, T)."""
    maps: list[torch.Tensor] = []

    def keep(module, args, kwargs, output):
        if not kwargs.get("return_weights"):
            maps.append(module(*args, **kwargs, return_weights=True)[1])

    hooks = [block.attn.register_forward_hook(keep, with_kwargs=True) for block in model.blocks]
    try:
        model(ids)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(maps, dim=1)
