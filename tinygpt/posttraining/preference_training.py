"""Training on preference pairs: a reward model, and DPO, from a fine-tuned checkpoint.

Hand-written infrastructure of chapter 4 around the graded pieces of ``preference``.
A pair's prompt is its chat up to an open assistant turn; each answer is its text and
``<|end|>``. Every pair becomes two rows of one batch, the chosen answer at ``i`` and
the rejected at ``i + n``, so that one forward pass scores both (TRL's "concatenated
forward" does the same). Both trainers take seeded random batches of pairs, with the
learning rate warmed up and decayed by chapter 3's ``lr_at``; DPO scores the frozen
reference once, before the first step, since it never changes. Their histories record
what the book plots: the loss, the accuracy, and for DPO the policy's mean
log-probabilities of the chosen and rejected answers and the implicit-reward margin.

DPO alone can lower the likelihood of the chosen answers too, as long as it lowers the
rejected ones more (Pal et al. 2024 measured it); when the two differ in one word, as
the course's wrong answers do, the model forgets how to say the right one. Llama 3
(Dubey et al. 2024) adds a negative log-likelihood term on the chosen answers, weighted
0.2; ``DPOConfig.nll_weight`` is that weight (per token, on the chosen answers).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from tinygpt.posttraining.data import PreferencePair
from tinygpt.posttraining.preference import (Completions, RewardModel, batch_completions,
                                             bradley_terry_loss, dpo_loss, pairwise_accuracy,
                                             sequence_logprobs)
from tinygpt.posttraining.template import encode_chat
from tinygpt.pretraining.model import GPT
from tinygpt.pretraining.optim import AdamW, clip_grad_norm, lr_at, param_groups
from tinygpt.tokenizer import Tokenizer
from tinygpt.tokenizer.control import END, EOT


@dataclass(frozen=True)
class RewardConfig:
    """Reward-model training: steps, pairs per batch, the learning-rate schedule, clipping."""

    steps: int = 200
    batch_pairs: int = 16
    max_lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 20
    grad_clip: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class DPOConfig:
    """DPO: beta, the weight of an NLL term on the chosen answers, steps, pairs per batch,
    the learning-rate schedule, clipping."""

    beta: float = 0.1
    nll_weight: float = 0.2  # Llama 3's: keeps the chosen answers likely (0: plain DPO)
    steps: int = 200
    batch_pairs: int = 16
    max_lr: float = 1e-4
    min_lr: float = 1e-5
    warmup_steps: int = 20
    grad_clip: float = 1.0
    seed: int = 0


def encode_pairs(tokenizer: Tokenizer, pairs: list[PreferencePair], block_size: int) -> Completions:
    """2n rows: each pair's prompt with its chosen answer (rows 0..n-1), then with its
    rejected answer (rows n..2n-1); an empty or undecided pair is a ValueError naming it."""
    if not pairs:
        raise ValueError("no preference pairs to train on")
    prompts, chosen, rejected = [], [], []
    end = tokenizer.special_tokens[END]
    for i, pair in enumerate(pairs):
        if not pair.chosen.strip() or not pair.rejected.strip():
            raise ValueError(f"preference pair {i} has an empty answer: chosen {pair.chosen!r}, "
                             f"rejected {pair.rejected!r}")
        if pair.chosen == pair.rejected:
            raise ValueError(f"preference pair {i} has the same answer twice: it prefers nothing")
        prompts.append(encode_chat(tokenizer, pair.prompt, generation_prompt=True).ids)
        chosen.append(tokenizer.encode_ordinary(pair.chosen) + [end])
        rejected.append(tokenizer.encode_ordinary(pair.rejected) + [end])
    try:
        return batch_completions(prompts * 2, chosen + rejected, tokenizer.special_tokens[EOT],
                                 block_size)
    except ValueError as err:  # name the pair, not the row
        raise ValueError(f"preference pairs: {err} (row i is pair i mod {len(pairs)})") from None


def _rows(batch: Completions, index: torch.Tensor) -> Completions:
    width = int(batch.lengths[index].max())
    return Completions(batch.tokens[index, :width], batch.completion[index, :width],
                       batch.lengths[index])


def pair_rows(batch: Completions, pairs: torch.Tensor) -> Completions:
    """The chosen rows of ``pairs``, then their rejected rows."""
    return _rows(batch, torch.cat([pairs, pairs + batch.tokens.shape[0] // 2]))


def scheduled(optimizer: torch.optim.Optimizer, step: int, config) -> None:
    """Set the learning rate of ``step`` by chapter 3's warm-up and cosine decay."""
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, config.max_lr, config.min_lr, config.warmup_steps, config.steps)


def rewards(model: RewardModel, batch: Completions) -> tuple[torch.Tensor, torch.Tensor]:
    """The rewards of the chosen rows and of the rejected rows of a pair batch."""
    r = model(batch.tokens, batch.lengths)
    return r.chunk(2)


def train_reward_model(base: GPT, tokenizer: Tokenizer, pairs: list[PreferencePair],
                       config: RewardConfig, progress: bool = False) -> tuple[RewardModel, dict]:
    """A reward model on a copy of ``base``'s trunk, trained with the Bradley-Terry loss;
    its history holds every step's loss and batch accuracy."""
    device = next(base.parameters()).device
    model = RewardModel(copy.deepcopy(base)).to(device).train()
    batch = encode_pairs(tokenizer, pairs, base.config.block_size).to(device)
    optimizer = AdamW(param_groups(model, 0.0), lr=config.max_lr)
    gen = torch.Generator().manual_seed(config.seed)
    history = {"reward": dataclasses.asdict(config), "pairs": len(pairs), "losses": [],
               "accuracy": [], "seconds": 0.0}
    began = time.perf_counter()
    for step in tqdm(range(config.steps), desc="reward model", disable=not progress):
        index = torch.randint(0, len(pairs), (config.batch_pairs,), generator=gen).to(device)
        scheduled(optimizer, step, config)
        optimizer.zero_grad(set_to_none=True)
        chosen, rejected = rewards(model, pair_rows(batch, index))
        loss = bradley_terry_loss(chosen, rejected)
        loss.backward()
        clip_grad_norm(model.parameters(), config.grad_clip)
        optimizer.step()
        history["losses"].append(loss.item())
        history["accuracy"].append(pairwise_accuracy(chosen.detach(), rejected.detach()))
    history["seconds"] = time.perf_counter() - began
    return model.eval(), history


@torch.no_grad()
def reward_accuracy(model: RewardModel, tokenizer: Tokenizer, pairs: list[PreferencePair]) -> float:
    """The share of ``pairs`` whose chosen answer the reward model scores higher."""
    device = next(model.parameters()).device
    batch = encode_pairs(tokenizer, pairs, model.trunk.config.block_size).to(device)
    return pairwise_accuracy(*rewards(model, batch))


def dpo_step(policy: GPT, optimizer: torch.optim.Optimizer, rows: Completions,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, step: int,
             config: DPOConfig, history: dict) -> None:
    """One DPO update on ``rows`` (a batch's chosen rows, then its rejected rows) given the
    reference's log-probabilities of both; appends the step's figures to ``history``."""
    scheduled(optimizer, step, config)
    optimizer.zero_grad(set_to_none=True)
    logps, per_token = sequence_logprobs(policy, rows)
    chosen, rejected = logps.chunk(2)
    loss, chosen_reward, rejected_reward = dpo_loss(chosen, rejected, ref_chosen, ref_rejected,
                                                    config.beta)
    (loss - config.nll_weight * per_token.chunk(2)[0].mean()).backward()
    clip_grad_norm(policy.parameters(), config.grad_clip)
    optimizer.step()
    margin = chosen_reward - rejected_reward
    history["losses"].append(loss.item())
    history["chosen_logp"].append(chosen.mean().item())
    history["rejected_logp"].append(rejected.mean().item())
    history["margin"].append(margin.mean().item())
    history["accuracy"].append((margin > 0).float().mean().item())


def dpo(policy: GPT, tokenizer: Tokenizer, pairs: list[PreferencePair], config: DPOConfig,
        progress: bool = False) -> tuple[GPT, dict]:
    """A DPO-trained copy of ``policy`` (its frozen original is the reference) and the
    history: every step's loss, the mean log-probabilities of the chosen and rejected
    answers, the implicit-reward margin and the share of pairs it orders right."""
    device = next(policy.parameters()).device
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    policy = copy.deepcopy(policy).train()
    batch = encode_pairs(tokenizer, pairs, policy.config.block_size).to(device)
    with torch.no_grad():
        ref_logps, _ = sequence_logprobs(reference, batch)
    n = len(pairs)
    optimizer = AdamW(param_groups(policy, 0.0), lr=config.max_lr)
    gen = torch.Generator().manual_seed(config.seed)
    history = {"dpo": dataclasses.asdict(config), "pairs": n, "losses": [], "chosen_logp": [],
               "rejected_logp": [], "margin": [], "accuracy": [], "seconds": 0.0}
    began = time.perf_counter()
    for step in tqdm(range(config.steps), desc="DPO", disable=not progress):
        index = torch.randint(0, n, (config.batch_pairs,), generator=gen).to(device)
        dpo_step(policy, optimizer, pair_rows(batch, index), ref_logps[index],
                 ref_logps[index + n], step, config, history)
    history["seconds"] = time.perf_counter() - began
    return policy.eval(), history
