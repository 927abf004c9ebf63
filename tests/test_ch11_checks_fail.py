"""Every chapter 11 check rejects a plausible wrong answer (a test must be able to fail)."""
from __future__ import annotations

import torch

from tinygpt.checks import ch11 as checks
from tinygpt.engine import sampling as s
from conftest import mutant_tests


def _top_k_strict(logits, k):  # exactly k tokens: ties at the boundary cut arbitrarily
    if (k < 0).any():
        raise ValueError("k")
    out = logits.clone()
    for row, n in enumerate(k.tolist()):
        if n and n < logits.shape[1]:
            drop = logits[row].topk(logits.shape[1] - n, largest=False).indices
            out[row, drop] = float("-inf")
    return out


def _top_k_zero_keeps_one(logits, k):  # k == 0 read as "keep the best one"
    return s.top_k_filter(logits, torch.where(k == 0, 1, k))


def _top_p_exclusive(logits, p):  # stops before the token that crosses p
    if ((p <= 0) | (p > 1)).any():
        raise ValueError("p")
    ordered, order = logits.sort(dim=-1, descending=True)
    cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative > p[:, None]
    remove[:, 0] = False
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))


def _top_p_same_for_all(logits, p):  # the first row's p for every row
    return s.top_p_filter(logits, p[:1].expand_as(p))


def _min_p_on_logits(logits, min_p):  # compares logits, not probabilities
    if ((min_p < 0) | (min_p > 1)).any():
        raise ValueError("min_p")
    top = logits.amax(dim=-1, keepdim=True)
    remove = (logits < min_p[:, None] * top) & (min_p[:, None] > 0)
    remove.scatter_(-1, logits.argmax(dim=-1, keepdim=True), False)
    return logits.masked_fill(remove, float("-inf"))


def _repetition_always_divides(logits, seen, counts, repetition, frequency, presence):
    if (repetition <= 0).any():
        raise ValueError("r")
    out = torch.where(seen, logits / repetition[:, None], logits)
    counts = counts.float()
    return out - counts * frequency[:, None] - (counts > 0).float() * presence[:, None]


def _presence_counted(logits, seen, counts, repetition, frequency, presence):  # presence * count
    out = s.penalize(logits, seen, counts, repetition, frequency, torch.zeros_like(presence))
    return out - counts.float() * presence[:, None]


def _draw_one_generator(logits, generators):  # every row from the first row's generator
    if len(generators) != logits.shape[0]:
        raise ValueError("generators")
    return torch.multinomial(logits.float().softmax(-1), 1, generator=generators[0]).squeeze(-1)


def _draw_argmax_noise(logits, generators):  # Gumbel-max: right distribution, other tokens
    if len(generators) != logits.shape[0]:
        raise ValueError("generators")
    noise = torch.stack([torch.rand(logits.shape[1], generator=g) for g in generators])
    return (logits - torch.log(-torch.log(noise))).argmax(dim=-1)


def _draw_left(logits, generators):  # searchsorted left: ties the boundary the other way
    if len(generators) != logits.shape[0]:
        raise ValueError("generators")
    u = torch.stack([torch.rand((), generator=g) for g in generators])
    cumulative = logits.float().softmax(dim=-1).cumsum(dim=-1)
    return torch.searchsorted(cumulative, (u * cumulative[:, -1])[:, None] * 0.9).squeeze(-1)


def _next_filters_before_temperature(logits, batch, seen, counts):
    scores = s.penalize(logits.float() + batch.bias, seen, counts, batch.repetition,
                        batch.frequency, batch.presence)
    greedy = batch.temperature == 0
    filtered = s.min_p_filter(s.top_p_filter(s.top_k_filter(scores, batch.top_k), batch.top_p),
                              batch.min_p)
    sampled = s.draw(filtered / torch.where(greedy, 1.0, batch.temperature)[:, None], batch.generators)
    return torch.where(greedy, scores.argmax(dim=-1), sampled)


def _next_penalties_after_temperature(logits, batch, seen, counts):  # penalties scaled by 1/T too
    greedy = batch.temperature == 0
    scaled = (logits.float() + batch.bias) / torch.where(greedy, 1.0, batch.temperature)[:, None]
    scores = s.penalize(scaled, seen, counts, batch.repetition, batch.frequency, batch.presence)
    filtered = s.min_p_filter(s.top_p_filter(s.top_k_filter(scores, batch.top_k), batch.top_p),
                              batch.min_p)
    return torch.where(greedy, scores.argmax(dim=-1), s.draw(filtered, batch.generators))


MUTANTS = [
    (checks.check_top_k, (_top_k_strict,)),
    (checks.check_top_k, (_top_k_zero_keeps_one,)),
    (checks.check_top_p, (_top_p_exclusive,)),
    (checks.check_top_p, (_top_p_same_for_all,)),
    (checks.check_min_p, (_min_p_on_logits,)),
    (checks.check_penalize, (_repetition_always_divides,)),
    (checks.check_penalize, (_presence_counted,)),
    (checks.check_draw, (_draw_one_generator,)),
    (checks.check_draw, (_draw_argmax_noise,)),
    (checks.check_draw, (_draw_left,)),
    (checks.check_next_tokens, (_next_filters_before_temperature,)),
    (checks.check_next_tokens, (_next_penalties_after_temperature,)),
]

(test_check_rejects_a_wrong_answer, test_every_check_has_a_mutant,
 test_stubs_fail_every_check) = mutant_tests(MUTANTS, checks)
