"""Property checks for chapter 11 (sampling), written once and run against anyone's code.

Notebook test cells call these on the learner's functions (visible cells with seed 0,
hidden cells with fresh seeds); pytest calls the same checks on the exported reference.
The oracles are Hugging Face's logits warpers and processors (``TopKLogitsWarper``,
``TopPLogitsWarper``, ``MinPLogitsWarper``, ``RepetitionPenaltyLogitsProcessor``) applied
row by row with each row's own setting, OpenAI's penalty formula written out token by
token, and the prescribed inverse-CDF draw walked in plain Python. Distributions are
checked with a chi-square test at a fixed seed (significance 1e-4, so an honest sampler
fails with probability 1e-4 per seed and a wrong one almost surely). Logits come with
ties and with tokens already at -inf. Checks print nothing.

Imports: chapter 11's reference (``SamplingParams``, ``SamplingBatch``, given in the
notebook) and nothing later.
"""
from __future__ import annotations

import random

import torch
from transformers.generation.logits_process import (MinPLogitsWarper,
                                                    RepetitionPenaltyLogitsProcessor,
                                                    TopKLogitsWarper, TopPLogitsWarper)

from tinygpt.checks.common import mismatch, raises_value_error, written_here
from tinygpt.engine.sampling import SamplingBatch, SamplingParams

__all__ = ["written_here", "check_top_k", "check_top_p", "check_min_p", "check_penalize",
           "check_draw", "check_next_tokens"]

SIGNIFICANCE = 1e-4


def _logits(rng: random.Random, rows: int, vocab: int) -> torch.Tensor:
    """Random logits at a random scale, sometimes rounded (ties), some tokens at -inf."""
    g = torch.Generator().manual_seed(rng.randrange(2 ** 31))
    x = torch.randn(rows, vocab, generator=g) * rng.choice([0.5, 2.0, 6.0])
    if rng.random() < 0.4:
        x = (x * 2).round() / 2
    for row in range(rows):
        if rng.random() < 0.4:
            x[row, rng.sample(range(vocab), rng.randrange(0, vocab))] = float("-inf")
    return x


def _shape(rng: random.Random) -> tuple[int, int]:
    return rng.randrange(1, 7), rng.choice([5, 17, 64, 300])


def _rowwise(name: str, given, want: torch.Tensor, got) -> None:
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        raise mismatch(f"{name} must return a tensor of the logits' shape", given, tuple(want.shape),
                       getattr(got, "shape", got))
    if not torch.equal(torch.isfinite(got), torch.isfinite(want)) or \
            not torch.allclose(got[torch.isfinite(want)], want[torch.isfinite(want)]):
        raise mismatch(name, given, want, got)


def _unchanged(name: str, logits: torch.Tensor, before: torch.Tensor) -> None:
    if not torch.equal(logits, before):
        raise AssertionError(f"{name} changed the logits it was given: return a new tensor")


def _check_filter(name: str, fn, seed: int, setting: str, draw_setting, warper) -> None:
    """Eight random batches with a setting per row (``draw_setting(rng, vocab)``): each row
    equals Hugging Face's ``warper(value)`` on it (None: the filter is off, the row stays
    as it is), and the logits given are not changed."""
    rng = random.Random(seed)
    for _ in range(8):
        rows, vocab = _shape(rng)
        logits = _logits(rng, rows, vocab)
        values = torch.tensor([draw_setting(rng, vocab) for _ in range(rows)])
        before = logits.clone()
        got = fn(logits, values)
        _unchanged(name, logits, before)
        want = torch.stack([w(None, row[None])[0] if (w := warper(v)) is not None else row
                            for row, v in zip(logits, values.tolist())])
        _rowwise(f"{name}(logits, {setting}={values.tolist()})", logits, want, got)


def check_top_k(top_k_filter, seed: int) -> None:
    """Each row equals TopKLogitsWarper(k) on it (ties at the k-th value kept); k == 0 and
    k > V leave a row as it is; the input is not changed; a negative k is a ValueError."""
    _check_filter("top_k_filter", top_k_filter, seed, "k",
                  lambda rng, vocab: rng.choice([0, 1, 2, 3, vocab // 2, vocab, vocab + 3]),
                  lambda n: TopKLogitsWarper(int(n)) if n else None)
    raises_value_error("top_k_filter with a negative k",
                       lambda: top_k_filter(torch.zeros(2, 4), torch.tensor([1, -1])))


def check_top_p(top_p_filter, seed: int) -> None:
    """Each row equals TopPLogitsWarper(p) on it; p == 1 leaves a row alone; the best
    token always stays; p outside (0, 1] is a ValueError."""
    _check_filter("top_p_filter", top_p_filter, seed, "p",
                  lambda rng, vocab: rng.choice([1.0, 0.9, 0.5, 0.05, round(rng.uniform(0.01, 0.99), 3)]),
                  lambda q: TopPLogitsWarper(float(q)))
    for bad in (0.0, 1.5, -0.1):
        raises_value_error(f"top_p_filter with p={bad}",
                           lambda: top_p_filter(torch.zeros(2, 4), torch.tensor([0.5, bad])))


def check_min_p(min_p_filter, seed: int) -> None:
    """Each row equals MinPLogitsWarper(min_p) on it; 0 leaves a row alone; min_p outside
    [0, 1] is a ValueError."""
    _check_filter("min_p_filter", min_p_filter, seed, "min_p",
                  lambda rng, vocab: rng.choice([0.0, 1.0, 0.05, 0.1, 0.5, round(rng.random(), 3)]),
                  lambda q: MinPLogitsWarper(float(q)) if q else None)
    raises_value_error("min_p_filter with min_p=1.5",
                       lambda: min_p_filter(torch.zeros(1, 4), torch.tensor([1.5])))


def _history(rng: random.Random, rows: int, vocab: int) -> tuple[list[list[int]], list[list[int]]]:
    """Each row's prompt tokens and generated tokens (repeats included)."""
    prompts = [[rng.randrange(vocab) for _ in range(rng.randrange(0, 8))] for _ in range(rows)]
    outputs = [[rng.randrange(vocab) for _ in range(rng.randrange(0, 10))] for _ in range(rows)]
    return prompts, outputs


def _seen_counts(prompts, outputs, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    seen = torch.zeros(len(prompts), vocab, dtype=torch.bool)
    counts = torch.zeros(len(prompts), vocab, dtype=torch.long)
    for row, (p, o) in enumerate(zip(prompts, outputs)):
        for t in p + o:
            seen[row, t] = True
        for t in o:
            counts[row, t] += 1
    return seen, counts


def _oracle_penalize(logits, prompts, outputs, repetition, frequency, presence) -> torch.Tensor:
    out = []
    for row, (p, o) in enumerate(zip(prompts, outputs)):
        x = logits[row][None]
        if p + o:
            x = RepetitionPenaltyLogitsProcessor(float(repetition[row]))(torch.tensor([p + o]), x)
        x = x[0].clone()
        for t in set(o):
            x[t] = x[t] - o.count(t) * float(frequency[row]) - float(presence[row])
        out.append(x)
    return torch.stack(out)


def check_penalize(penalize, seed: int) -> None:
    """Equals RepetitionPenaltyLogitsProcessor over prompt and generated tokens, then
    OpenAI's count * frequency + presence over the generated ones, row by row with each
    row's penalties; the input is not changed; a repetition penalty <= 0 is a ValueError."""
    rng = random.Random(seed)
    for _ in range(8):
        rows, vocab = _shape(rng)
        logits = _logits(rng, rows, vocab)
        prompts, outputs = _history(rng, rows, vocab)
        seen, counts = _seen_counts(prompts, outputs, vocab)
        repetition = torch.tensor([rng.choice([1.0, 1.3, 2.0, 0.7]) for _ in range(rows)])
        frequency = torch.tensor([rng.choice([0.0, 0.5, -0.5, 2.0]) for _ in range(rows)])
        presence = torch.tensor([rng.choice([0.0, 0.6, -1.0, 2.0]) for _ in range(rows)])
        before = logits.clone()
        got = penalize(logits, seen, counts, repetition, frequency, presence)
        _unchanged("penalize", logits, before)
        want = _oracle_penalize(logits, prompts, outputs, repetition, frequency, presence)
        _rowwise(f"penalize (repetition {repetition.tolist()}, frequency {frequency.tolist()}, "
                 f"presence {presence.tolist()}; prompts {prompts}, generated {outputs})",
                 logits, want, got)
    raises_value_error("penalize with a repetition penalty of 0", lambda: penalize(
        torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.bool), torch.zeros(1, 3, dtype=torch.long),
        torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0])))


def _generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def _oracle_draw(logits: torch.Tensor, seeds_or_generators) -> list[int]:
    """Each row: one uniform u from its generator; the first token whose cumulative
    probability exceeds u times the row's total (walked in plain Python)."""
    gens = seeds_or_generators if isinstance(seeds_or_generators[0], torch.Generator) \
        else _generators(seeds_or_generators)
    out = []
    for row, g in zip(logits, gens):
        u = torch.rand((), generator=g).item()
        cumulative = row.float().softmax(dim=-1).cumsum(dim=-1).tolist()
        target = torch.tensor(u, dtype=torch.float32) * torch.tensor(cumulative[-1])
        out.append(next((i for i, c in enumerate(cumulative) if c > target.item()), len(cumulative) - 1))
    return out


def _chi_square_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """The p-value of Pearson's chi-square test of ``counts`` against ``probs``, with
    tokens expected fewer than 5 times pooled into one bin."""
    n = counts.sum().item()
    expected = probs.double() * n
    small = expected < 5
    observed = torch.cat([counts[~small].double(), counts[small].double().sum()[None]])
    expected = torch.cat([expected[~small], expected[small].sum()[None]])
    keep = expected > 0
    observed, expected = observed[keep], expected[keep]
    if (counts[probs == 0] > 0).any():
        return 0.0
    if len(expected) < 2:
        return 1.0
    statistic = ((observed - expected) ** 2 / expected).sum()
    return torch.special.gammaincc(torch.tensor((len(expected) - 1) / 2, dtype=torch.float64),
                                   statistic / 2).item()


def check_draw(draw, seed: int) -> None:
    """Tokens equal the prescribed inverse-CDF draw (one uniform per row from its own
    generator); over 2,000 seeded steps each row's frequencies pass a chi-square test
    against softmax(logits) and never hit a -inf token; a row's tokens do not change
    when the other rows change; the same seeds give the same tokens; the wrong number of
    generators is a ValueError."""
    rng = random.Random(seed)
    for _ in range(6):
        rows, vocab = _shape(rng)
        logits = _logits(rng, rows, vocab)
        seeds = [rng.randrange(2 ** 31) for _ in range(rows)]
        got = draw(logits, _generators(seeds))
        want = _oracle_draw(logits, seeds)
        if not isinstance(got, torch.Tensor) or got.dtype != torch.long or got.tolist() != want:
            raise mismatch(f"draw(logits, generators seeded {seeds})", logits, want, got)
    rows, vocab, steps = 3, rng.choice([4, 6, 10]), 2000
    logits = _logits(rng, rows, vocab)
    gens = _generators([rng.randrange(2 ** 31) for _ in range(rows)])
    tokens = torch.stack([draw(logits, gens) for _ in range(steps)])  # (steps, rows)
    for row in range(rows):
        counts = torch.bincount(tokens[:, row], minlength=vocab)
        p = _chi_square_p(counts, logits[row].float().softmax(dim=-1))
        if p < SIGNIFICANCE:
            raise mismatch(f"row {row}'s {steps} draws do not follow softmax(logits) "
                           f"(chi-square p = {p:.2g} < {SIGNIFICANCE})", logits[row],
                           (logits[row].softmax(-1) * steps).round().tolist(), counts.tolist())
    mine = logits[:1]
    alone = draw(mine, _generators([11]))[0].item()
    for others in range(1, 4):
        batch = torch.cat([mine, _logits(rng, others, mine.shape[1])])
        token = draw(batch, _generators([11] + [rng.randrange(2 ** 31) for _ in range(others)]))[0].item()
        if token != alone:
            raise mismatch("a row's token changed when other rows joined its batch", mine, alone, token)
    raises_value_error("draw with fewer generators than rows",
                       lambda: draw(torch.zeros(3, 4), _generators([1, 2])))


def _random_params(rng: random.Random, vocab: int) -> SamplingParams:
    return SamplingParams(
        temperature=rng.choice([0.0, 0.0, 0.5, 1.0, 1.7]), top_k=rng.choice([0, 0, 1, 3, vocab]),
        top_p=rng.choice([1.0, 0.9, 0.5]), min_p=rng.choice([0.0, 0.0, 0.1]),
        repetition_penalty=rng.choice([1.0, 1.2]), frequency_penalty=rng.choice([0.0, 0.5]),
        presence_penalty=rng.choice([0.0, 0.4]),
        logit_bias=tuple((t, rng.choice([-100.0, 5.0])) for t in rng.sample(range(vocab), rng.randrange(0, 3))),
        seed=rng.randrange(2 ** 31))


def _oracle_next(logits, params: list[SamplingParams], gens, prompts, outputs) -> list[int]:
    bias = torch.zeros_like(logits)
    for row, p in enumerate(params):
        for t, b in p.logit_bias:
            bias[row, t] = b
    scores = _oracle_penalize(logits + bias, prompts, outputs,
                              [p.repetition_penalty for p in params],
                              [p.frequency_penalty for p in params], [p.presence_penalty for p in params])
    out = []
    for row, p in enumerate(params):
        x = scores[row][None] / (p.temperature or 1.0)
        if p.top_k:
            x = TopKLogitsWarper(p.top_k)(None, x)
        x = MinPLogitsWarper(p.min_p)(None, TopPLogitsWarper(p.top_p)(None, x)) if p.min_p else \
            TopPLogitsWarper(p.top_p)(None, x)
        sampled = _oracle_draw(x, [gens[row]])[0]
        out.append(scores[row].argmax().item() if p.temperature == 0 else sampled)
    return out


def check_next_tokens(next_tokens, seed: int) -> None:
    """Equals the pipeline built from the oracles (bias, repetition then OpenAI penalties,
    temperature, HF's top-k, top-p and min-p, the prescribed draw; argmax at temperature
    0) over random per-row settings, step after step with the same generators."""
    rng = random.Random(seed)
    for _ in range(8):
        rows, vocab = _shape(rng)
        params = [_random_params(rng, vocab) for _ in range(rows)]
        prompts, outputs = _history(rng, rows, vocab)
        batch = SamplingBatch.build(params, vocab)
        gens = _generators([p.seed for p in params])
        for step in range(5):
            logits = _logits(rng, rows, vocab)
            logits[:, 0] = 0.0  # every row keeps at least one finite logit
            seen, counts = _seen_counts(prompts, outputs, vocab)
            got = next_tokens(logits, batch, seen, counts)
            want = _oracle_next(logits, params, gens, prompts, outputs)
            if not isinstance(got, torch.Tensor) or got.tolist() != want:
                raise mismatch(f"next_tokens at step {step + 1} with settings {params}", logits,
                               want, got)
            for row, token in enumerate(got.tolist()):
                outputs[row].append(token)
