"""GRPO on the world's checkable tasks: sampling a group per prompt, marking it, updating.

Hand-written infrastructure of chapter 4 around the graded pieces of ``grpo``. Each
step draws prompts from the tasks (``tinygpt.posttraining.data.verifiable_tasks``),
samples a group of completions for each from the current policy (no KV cache: chapters
10-12 make generation fast), marks them with ``is_correct`` (1 or 0), turns the marks
into group-relative advantages, and takes one clipped-ratio step with the KL penalty to
the frozen starting model, as TRL's ``GRPOTrainer`` does with its default of one update
per batch of samples (so the sampling policy's log-probabilities are the policy's own,
before the step). ``task_accuracy`` marks greedy answers, the number reported before
and after.
"""
from __future__ import annotations

import copy
import dataclasses
import random
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from tinygpt.posttraining.data import Task, is_correct
from tinygpt.posttraining.finetune import answer
from tinygpt.posttraining.grpo import group_advantages, grpo_loss
from tinygpt.posttraining.preference import Completions, batch_completions
from tinygpt.posttraining.preference_training import scheduled
from tinygpt.posttraining.template import encode_chat
from tinygpt.pretraining.model import GPT
from tinygpt.pretraining.optim import AdamW, clip_grad_norm, param_groups
from tinygpt.tokenizer import Tokenizer
from tinygpt.tokenizer.control import END, EOT


@dataclass(frozen=True)
class GRPOConfig:
    """GRPO: prompts and group size per step, sampling, clipping, the KL weight, the schedule."""

    steps: int = 60
    prompts_per_step: int = 8
    group_size: int = 8
    max_new_tokens: int = 24
    temperature: float = 1.0
    clip_eps: float = 0.2
    beta: float = 0.04           # TRL's former default and DeepSeekMath's
    max_lr: float = 1e-4
    min_lr: float = 1e-5
    warmup_steps: int = 5
    grad_clip: float = 1.0
    seed: int = 0


@torch.no_grad()
def sample_groups(model: GPT, prompts: list[list[int]], group_size: int, max_new_tokens: int,
                  temperature: float, end_id: int, gen: torch.Generator) -> list[list[list[int]]]:
    """``group_size`` completions of each prompt, each up to and including ``end_id`` or cut
    at ``max_new_tokens`` (or the context). All rows are sampled together, left-padded: a
    row's positions start at its first real token and no token attends to padding."""
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    rows = torch.zeros(len(prompts) * group_size, width, dtype=torch.long)
    pad = torch.tensor([width - len(p) for p in prompts for _ in range(group_size)])
    for i, p in enumerate(prompts):
        rows[i * group_size:(i + 1) * group_size, width - len(p):] = torch.tensor(p)
    rows, pad = rows.to(device), pad.to(device)
    out: list[list[int]] = [[] for _ in range(rows.shape[0])]
    done = [False] * rows.shape[0]
    for _ in range(min(max_new_tokens, model.config.block_size + 1 - width)):
        t = torch.arange(rows.shape[1], device=device)
        real = t[None] >= pad[:, None]                                   # (R, T)
        mask = (t[None, :, None] >= t[None, None, :]) & real[:, None, :]  # causal, no padding
        mask |= torch.eye(rows.shape[1], dtype=torch.bool, device=device)  # padding sees itself
        positions = (t[None] - pad[:, None]).clamp(min=0)
        logits = model(rows, positions=positions, mask=mask)[:, -1].float()
        nxt = torch.multinomial((logits / temperature).softmax(-1).cpu(), 1, generator=gen)[:, 0]
        for i, token in enumerate(nxt.tolist()):
            if not done[i]:
                out[i].append(token)
                done[i] = token == end_id
        if all(done):
            break
        rows = torch.cat([rows, nxt[:, None].to(device)], dim=1)
    return [out[i * group_size:(i + 1) * group_size] for i in range(len(prompts))]


def reply_text(tokenizer: Tokenizer, completion: list[int]) -> str:
    """A sampled completion as text, without its closing ``<|end|>``."""
    end = tokenizer.special_tokens[END]
    return tokenizer.decode([t for t in completion if t != end])


def token_logprobs(model: GPT, batch: Completions) -> torch.Tensor:
    """(B, T - 1): log p of each row's token t + 1 given the tokens before it."""
    logits = model(batch.tokens[:, :-1]).float()
    return logits.log_softmax(-1).gather(-1, batch.tokens[:, 1:, None]).squeeze(-1)


def grpo(policy: GPT, tokenizer: Tokenizer, tasks: list[Task], config: GRPOConfig,
         progress: bool = False) -> tuple[GPT, dict]:
    """A GRPO-trained copy of ``policy`` (its frozen original is the reference) and the
    history: every step's mean reward, loss, KL and share of groups that taught something."""
    if len(tasks) < config.prompts_per_step:
        raise ValueError(f"{len(tasks)} tasks: fewer than the {config.prompts_per_step} "
                         "prompts a step draws")
    device = next(policy.parameters()).device
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    policy = copy.deepcopy(policy).train()
    end, pad = tokenizer.special_tokens[END], tokenizer.special_tokens[EOT]
    optimizer = AdamW(param_groups(policy, 0.0), lr=config.max_lr)
    gen, picker = torch.Generator().manual_seed(config.seed), random.Random(config.seed)
    history = {"grpo": dataclasses.asdict(config), "tasks": len(tasks), "reward": [],
               "losses": [], "kl": [], "informative": [], "seconds": 0.0}
    began = time.perf_counter()
    bar = tqdm(range(config.steps), desc="GRPO", disable=not progress)
    for step in bar:
        drawn = picker.sample(tasks, config.prompts_per_step)
        ids = [encode_chat(tokenizer, task.prompt, generation_prompt=True).ids for task in drawn]
        groups = sample_groups(policy, ids, config.group_size, config.max_new_tokens,
                               config.temperature, end, gen)
        marks = [[float(is_correct(task, reply_text(tokenizer, c))) for c in group]
                 for task, group in zip(drawn, groups)]
        prompts = [p for p in ids for _ in range(config.group_size)]
        completions = [c for group in groups for c in group]
        rewards = torch.tensor(marks)
        advantages = group_advantages(rewards).flatten().to(device)
        batch = batch_completions(prompts, completions, pad, policy.config.block_size + 1).to(device)
        with torch.no_grad():
            old, ref = token_logprobs(policy, batch), token_logprobs(reference, batch)
        scheduled(optimizer, step, config)
        optimizer.zero_grad(set_to_none=True)
        loss, kl = grpo_loss(token_logprobs(policy, batch), old, ref, advantages,
                             batch.completion[:, 1:], config.clip_eps, config.beta)
        loss.backward()
        clip_grad_norm(policy.parameters(), config.grad_clip)
        optimizer.step()
        history["reward"].append(rewards.mean().item())
        history["losses"].append(loss.item())
        history["kl"].append(kl.item())
        history["informative"].append((rewards.std(dim=1) > 0).float().mean().item())
        bar.set_postfix(reward=f"{history['reward'][-1]:.2f}")
    history["seconds"] = time.perf_counter() - began
    return policy.eval(), history


def task_accuracy(model: GPT, tokenizer: Tokenizer, tasks: list[Task]) -> dict[str, float]:
    """The share of tasks whose greedy answer the checker accepts, overall and per kind."""
    hits: dict[str, list[bool]] = {}
    for task in tasks:
        ok = is_correct(task, answer(model, tokenizer, task.prompt))
        hits.setdefault("all", []).append(ok)
        hits.setdefault(task.kind, []).append(ok)
    return {kind: sum(v) / len(v) for kind, v in hits.items()}
