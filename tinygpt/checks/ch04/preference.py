"""Chapter 4's checks for notebook 2, learning from preferences.

Rows of random prompts and completions, batched by an oracle written here, with random
tokens in the padding so that code which lets padding count is caught; every
log-probability and reward is compared with the example computed alone, and the
Bradley-Terry and DPO losses with their papers' formulas (DPO's as TRL's ``sigmoid``
loss writes it, without label smoothing), in float64. Part of ``tinygpt.checks.ch04``.
"""
from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass

import torch
from torch import nn

from tinygpt.checks.ch03.shared import close
from tinygpt.checks.ch04.shared import tiny_gpt
from tinygpt.checks.common import mismatch, raises_value_error


def _random_rows(rng: random.Random, gen: torch.Generator, n: int, longest: int, vocab: int):
    """n (prompt, completion) id lists, each at least one token, together at most ``longest``."""
    rows = []
    for _ in range(n):
        total = rng.randrange(2, longest + 1)
        cut = rng.randrange(1, total)
        ids = torch.randint(0, vocab, (total,), generator=gen).tolist()
        rows.append((ids[:cut], ids[cut:]))
    return rows


@dataclass
class _Rows:
    """The oracle's batch (the fields of ``preference.Completions``), padded with random tokens."""

    tokens: torch.Tensor
    completion: torch.Tensor
    lengths: torch.Tensor


def _rows_batch(rows, gen: torch.Generator, vocab: int) -> _Rows:
    lengths = torch.tensor([len(p) + len(c) for p, c in rows])
    tokens = torch.randint(0, vocab, (len(rows), int(lengths.max())), generator=gen)
    completion = torch.zeros(tokens.shape, dtype=torch.bool)
    for i, (p, c) in enumerate(rows):
        tokens[i, :len(p) + len(c)] = torch.tensor(p + c)
        completion[i, len(p):len(p) + len(c)] = True
    return _Rows(tokens, completion, lengths)


def check_batch_completions(batch_completions, seed: int) -> None:
    """Rows of prompt + completion right-padded with pad_id, the completion's positions
    marked, the lengths; an empty prompt or completion, or a row longer than the context,
    is a ValueError."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(4):
        block, pad = rng.randrange(4, 20), rng.randrange(300, 320)
        rows = _random_rows(rng, gen, rng.randrange(1, 6), block, 300)
        got = batch_completions([p for p, _ in rows], [c for _, c in rows], pad, block)
        width = max(len(p) + len(c) for p, c in rows)
        want_tokens = torch.tensor([p + c + [pad] * (width - len(p) - len(c)) for p, c in rows])
        want_mask = torch.tensor([[len(p) <= t < len(p) + len(c) for t in range(width)]
                                  for p, c in rows])
        want_len = torch.tensor([len(p) + len(c) for p, c in rows])
        for name, want in (("tokens", want_tokens), ("completion", want_mask),
                           ("lengths", want_len)):
            value = getattr(got, name, None)
            if not isinstance(value, torch.Tensor) or value.dtype != want.dtype or \
                    value.shape != want.shape or not torch.equal(value, want):
                raise mismatch(f"batch_completions(..., pad_id={pad}, block_size={block}).{name}",
                               rows, want.tolist(), value.tolist() if isinstance(
                                   value, torch.Tensor) else value)
    prompt, completion = rows[0]
    raises_value_error("batch_completions with an empty completion",
                       lambda: batch_completions([prompt, prompt], [completion, []], pad, block))
    raises_value_error("batch_completions with an empty prompt",
                       lambda: batch_completions([[], prompt], [completion, completion], pad, block))
    raises_value_error(f"batch_completions of a row of {block + 1} tokens with block_size {block}",
                       lambda: batch_completions([[1] * block], [[2]], pad, block))


def _alone(model, prompt: list[int], completion: list[int]) -> torch.Tensor:
    """The completion's per-token log-probabilities, the example run by itself."""
    ids = torch.tensor([prompt + completion])
    logp = model(ids[:, :-1])[0].double().log_softmax(-1)
    return torch.stack([logp[t - 1, ids[0, t]] for t in range(len(prompt), ids.shape[1])])


def check_sequence_logprobs(sequence_logprobs, seed: int) -> None:
    """Sum and mean over the completion tokens of log p(token | before), each row equal to
    the example run alone; the prompt and the padding count for nothing."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(3):
        config, model = tiny_gpt(rng)
        rows = _random_rows(rng, gen, rng.randrange(1, 6), config.block_size, config.vocab_size)
        with torch.no_grad():
            got = sequence_logprobs(model, _rows_batch(rows, gen, config.vocab_size))
            if not isinstance(got, tuple) or len(got) != 2:
                raise AssertionError("sequence_logprobs must return a (sum, mean) tuple")
            alone = [_alone(model, p, c) for p, c in rows]
        shapes = [len(p) for p, _ in rows], [len(c) for _, c in rows]
        close(f"the summed log-probabilities (prompt lengths {shapes[0]}, completion lengths "
              f"{shapes[1]}) against each example alone", got[0],
              torch.stack([a.sum() for a in alone]), atol=1e-4)
        close(f"the mean log-probabilities (completion lengths {shapes[1]}) against each "
              "example alone", got[1], torch.stack([a.mean() for a in alone]), atol=1e-4)
        for name, value in zip(("sum", "mean"), got):
            if value.dtype != torch.float32:
                raise AssertionError(f"the {name} must be float32, got {value.dtype}")


def check_reward_model(RewardModel, seed: int) -> None:
    """``RewardModel(gpt)`` keeps the GPT as ``trunk`` with a scalar ``head`` (a Linear from
    n_embd to 1); each row's reward is the head on the trunk's final (normed) hidden state
    at the row's last token, as the example alone gives it, and training it trains the
    trunk."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(2):
        config, gpt = tiny_gpt(rng)
        features = copy.deepcopy(gpt)
        features.lm_head = nn.Identity()
        rm = RewardModel(copy.deepcopy(gpt))
        head = getattr(rm, "head", None)
        if tuple(getattr(getattr(head, "weight", None), "shape", ())) != (1, config.n_embd) or \
                getattr(head, "bias", None) is None:
            raise AssertionError(f"RewardModel needs .head = nn.Linear({config.n_embd}, 1), got "
                                 f"{head!r}")
        if not isinstance(getattr(rm, "trunk", None), nn.Module):
            raise AssertionError("RewardModel keeps the GPT it is given as .trunk")
        with torch.no_grad():
            head.weight.copy_(torch.randn(head.weight.shape, generator=gen))
            head.bias.copy_(torch.randn(1, generator=gen))
        rows = _random_rows(rng, gen, rng.randrange(1, 6), config.block_size, config.vocab_size)
        batch = _rows_batch(rows, gen, config.vocab_size)
        got = rm(batch.tokens, batch.lengths)
        with torch.no_grad():
            want = torch.stack([(features(torch.tensor([p + c]))[0, -1] @ head.weight[0] + head.bias[0]) for p, c in rows])
        close(f"rewards of rows of lengths {batch.lengths.tolist()} (random padding after "
              "each) against each example alone", got, want, atol=1e-4)
        got.sum().backward()
        trunk_grads = [p.grad for p in rm.trunk.parameters() if p.grad is not None]
        if not trunk_grads or all(float(g.abs().sum()) == 0 for g in trunk_grads):
            raise AssertionError("the reward sends no gradient into the trunk: the reward model "
                                 "trains the pre-trained GPT too, not only the head")


def check_bradley_terry(bradley_terry_loss, pairwise_accuracy, seed: int) -> None:
    """The mean of -log sigmoid(r_chosen - r_rejected), finite for margins of hundreds, and
    its gradient; the accuracy counts pairs with the chosen reward strictly higher."""
    gen = torch.Generator().manual_seed(seed)
    for n in (1, 7, 33):
        rc = (torch.randn(n, generator=gen, dtype=torch.float64) * 3).requires_grad_()
        rr = (torch.randn(n, generator=gen, dtype=torch.float64) * 3).requires_grad_()
        got = bradley_terry_loss(rc, rr)
        margin = (rc - rr).detach()
        want = torch.log1p(torch.exp(-margin)).mean()
        close(f"bradley_terry_loss of {n} pairs", got, want, atol=1e-9)
        got.backward()
        close(f"the gradient of bradley_terry_loss for r_chosen ({n} pairs)", rc.grad,
              -torch.sigmoid(-margin) / n, atol=1e-9)
        close(f"the gradient of bradley_terry_loss for r_rejected ({n} pairs)", rr.grad,
              torch.sigmoid(-margin) / n, atol=1e-9)
    far = bradley_terry_loss(torch.tensor([-150.0, 200.0]), torch.tensor([150.0, -200.0]))
    close("bradley_terry_loss at margins of -300 and 400 (log(1 + e^300) is about 300; "
          "computed naively it overflows)", far.double(), torch.tensor(150.0, dtype=torch.float64),
          atol=1e-3)
    rc = torch.randint(0, 4, (40,), generator=gen).float()
    rr = torch.randint(0, 4, (40,), generator=gen).float()
    acc = pairwise_accuracy(rc, rr)
    want_acc = sum(a > b for a, b in zip(rc.tolist(), rr.tolist())) / 40
    if not isinstance(acc, float) or abs(acc - want_acc) > 1e-6:
        raise mismatch("pairwise_accuracy (ties count as wrong; a float)",
                       list(zip(rc.tolist(), rr.tolist()))[:8], want_acc, acc)


def check_dpo_loss(dpo_loss, seed: int) -> None:
    """-log sigmoid(beta * ((pc - rc) - (pr - rr))), averaged, and its gradient; the
    implicit rewards beta * (policy - reference), detached; the reference gets no gradient;
    with the policy equal to the reference the loss is log 2."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for n in (1, 5, 16):
        beta = rng.choice([0.05, 0.1, 0.5])
        pc, pr, rc, rr = ((torch.rand(n, generator=gen, dtype=torch.float64) * -40)
                          .requires_grad_() for _ in range(4))
        out = dpo_loss(pc, pr, rc, rr, beta=beta)
        if not isinstance(out, tuple) or len(out) != 3:
            raise AssertionError("dpo_loss must return (loss, chosen_rewards, rejected_rewards)")
        loss, chosen, rejected = out
        h = ((pc - rc) - (pr - rr)).detach()
        close(f"dpo_loss of {n} pairs, beta {beta}", loss, -torch.nn.functional.logsigmoid(
            beta * h).mean(), atol=1e-9)
        close(f"chosen rewards (beta {beta})", chosen, beta * (pc - rc).detach(), atol=1e-9)
        close(f"rejected rewards (beta {beta})", rejected, beta * (pr - rr).detach(), atol=1e-9)
        if chosen.requires_grad or rejected.requires_grad:
            raise AssertionError("the implicit rewards are for reporting: return them detached")
        loss.backward()
        slope = -beta * torch.sigmoid(-beta * h) / n
        close(f"the gradient of dpo_loss for the policy's chosen log-probabilities (beta {beta})",
              pc.grad, slope, atol=1e-9)
        close(f"the gradient for the policy's rejected log-probabilities (beta {beta})",
              pr.grad, -slope, atol=1e-9)
        for name, t in (("chosen", rc), ("rejected", rr)):
            if t.grad is not None and float(t.grad.abs().sum()) != 0:
                raise AssertionError(f"the reference's {name} log-probabilities got a gradient: "
                                     "the reference is frozen (detach it)")
    same = -(torch.rand(9, generator=gen) * 30)
    other = -(torch.rand(9, generator=gen) * 30)
    loss, chosen, rejected = dpo_loss(same, other, same.clone(), other.clone(), beta=0.1)
    close("dpo_loss with the policy equal to the reference (log 2)", loss.double(),
          torch.tensor(math.log(2), dtype=torch.float64), atol=1e-6)
