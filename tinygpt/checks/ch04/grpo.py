"""Chapter 4's checks for notebook 3, GRPO and critique-and-revise.

Advantages and the GRPO loss are compared, in float64, with oracles written here in
loops over groups and tokens (``statistics.stdev`` for the group's spread), with the
gradients autograd takes through the oracle, and with the invariants the method rests
on: advantages of zero mean per group that ignore a constant added to every reward,
no KL where the policy is the reference, no gradient through a clipped token.
Critique-and-revise runs on principles made here at random, each a different string
rule, against a plain loop. Part of ``tinygpt.checks.ch04``.
"""
from __future__ import annotations

import random
import statistics

import torch

from tinygpt.checks.ch03.shared import close
from tinygpt.checks.common import mismatch, raises_value_error
from tinygpt.posttraining.data import SYSTEM_PROMPT
from tinygpt.posttraining.grpo import Principle
from tinygpt.world import build_world


def _advantages_oracle(rewards: list[list[float]], eps: float) -> torch.Tensor:
    out = []
    for group in rewards:
        mean, std = statistics.fmean(group), statistics.stdev(group)
        out.append([(r - mean) / (std + eps) for r in group])
    return torch.tensor(out, dtype=torch.float64)


def check_group_advantages(group_advantages, seed: int) -> None:
    """(reward - group mean) / (unbiased group std + eps) per group of a (P, G) tensor: zero
    mean in each group, the same after adding a constant to every reward, zeros for a
    group whose rewards are all equal; 1-D rewards or groups of one are a ValueError."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(4):
        p, g, eps = rng.randrange(1, 6), rng.randrange(2, 9), rng.choice([1e-4, 1e-2])
        if rng.random() < 0.5:  # pass or fail, as a checker marks
            rewards = torch.randint(0, 2, (p, g), generator=gen).double()
        else:
            rewards = torch.randn(p, g, generator=gen, dtype=torch.float64) * 3
        rewards[0] = rewards[0, 0]  # one group with nothing to learn from
        got = group_advantages(rewards, eps=eps)
        want = _advantages_oracle(rewards.tolist(), eps)
        close(f"group_advantages of {p} groups of {g} (eps {eps})", got, want, atol=1e-9)
        shift = rng.uniform(-50, 50)
        close(f"group_advantages after adding {shift:.2f} to every reward", group_advantages(
            rewards + shift, eps=eps), want, atol=1e-7)
    raises_value_error("group_advantages of a 1-D tensor", lambda: group_advantages(
        torch.ones(5, dtype=torch.float64)))
    raises_value_error("group_advantages of groups of one completion", lambda: group_advantages(
        torch.ones(3, 1, dtype=torch.float64)))


def _loss_oracle(logp, old, ref, adv, mask, eps: float, beta: float):
    """Token by token: the clipped surrogate, the k3 KL estimate, means per completion."""
    losses, kls = [], []
    for b in range(logp.shape[0]):
        terms, kl_terms = [], []
        for t in range(logp.shape[1]):
            if not mask[b, t]:
                continue
            ratio = torch.exp(logp[b, t] - old[b, t])
            surrogate = torch.minimum(ratio * adv[b], ratio.clamp(1 - eps, 1 + eps) * adv[b])
            log_r = ref[b, t] - logp[b, t]
            kl = torch.exp(log_r) - log_r - 1
            terms.append(-(surrogate - beta * kl))
            kl_terms.append(kl)
        losses.append(torch.stack(terms).mean())
        kls.append(torch.stack(kl_terms).mean())
    return torch.stack(losses).mean(), torch.stack(kls).mean()


def _random_logps(gen, b: int, t: int, spread: float) -> tuple[torch.Tensor, ...]:
    logp = -torch.rand(b, t, generator=gen, dtype=torch.float64) * 4
    old = logp + torch.randn(b, t, generator=gen, dtype=torch.float64) * spread
    ref = logp + torch.randn(b, t, generator=gen, dtype=torch.float64) * spread
    return logp, old, ref


def check_grpo_loss(grpo_loss, seed: int) -> None:
    """The per-token clipped objective with the KL penalty, averaged per completion then
    over completions, and its gradient; the mean KL; no gradient into the sampling policy
    or the reference; zero KL where the policy is the reference."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(4):
        b, t = rng.randrange(1, 6), rng.randrange(2, 9)
        eps, beta = rng.choice([0.1, 0.2]), rng.choice([0.0, 0.04, 0.3])
        logp, old, ref = _random_logps(gen, b, t, spread=0.3)  # ratios beyond the clip range
        adv = torch.randn(b, generator=gen, dtype=torch.float64)
        mask = torch.rand(b, t, generator=gen) < 0.7
        mask[:, rng.randrange(t)] = True
        mine = logp.clone().requires_grad_()
        old_in, ref_in = old.clone().requires_grad_(), ref.clone().requires_grad_()
        out = grpo_loss(mine, old_in, ref_in, adv, mask, clip_eps=eps, beta=beta)
        if not isinstance(out, tuple) or len(out) != 2:
            raise AssertionError("grpo_loss must return (loss, mean KL)")
        theirs = logp.clone().requires_grad_()
        want, want_kl = _loss_oracle(theirs, old, ref, adv, mask, eps, beta)
        what = f"grpo_loss ({b} completions of {t} positions, clip {eps}, beta {beta})"
        close(what, out[0], want.detach(), atol=1e-9)
        close(f"the mean KL of {what}", out[1], want_kl.detach(), atol=1e-9)
        out[0].backward()
        want.backward()
        close(f"the gradient of {what} for the policy's log-probabilities", mine.grad,
              theirs.grad, atol=1e-9)
        for name, x in (("sampling policy's", old_in), ("reference's", ref_in)):
            if x.grad is not None and float(x.grad.abs().sum()) != 0:
                raise AssertionError(f"grpo_loss sends a gradient into the {name} "
                                     "log-probabilities: they are constants (detach them)")
    logp, _, _ = _random_logps(gen, 3, 5, spread=0.0)
    mask = torch.ones(3, 5, dtype=torch.bool)
    _, kl = grpo_loss(logp, logp.clone(), logp.clone(), torch.zeros(3, dtype=torch.float64),
                      mask, clip_eps=0.2, beta=0.1)
    close("the KL of a policy equal to its reference", kl, torch.tensor(0.0, dtype=torch.float64),
          atol=1e-12)


def _principles(rng: random.Random) -> list[Principle]:
    """Two to four string rules: a word the draft must not hold, and one it must end with."""
    rules = []
    for i in range(rng.randrange(2, 5)):
        if rng.random() < 0.5:
            word = rng.choice(["river", "lives", "the", "in", "is"])
            rules.append(Principle(
                f"no-{word}-{i}", f"Do not say {word!r}.",
                lambda fact, draft, w=word: f"it says {w!r}" if f" {w} " in f" {draft} " else None,
                lambda fact, draft, critique, w=word: " ".join(x for x in draft.split() if x != w)))
        else:
            tail = rng.choice(["Thank you.", "Indeed.", "Marrow."])
            rules.append(Principle(
                f"end-{tail}-{i}", f"End with {tail!r}.",
                lambda fact, draft, t=tail: None if draft.endswith(t) else f"it does not end with {t!r}",
                lambda fact, draft, critique, t=tail: f"{draft} {t}"))
    return rules


def _revise_oracle(fact, draft, principles, rounds: int):
    critiques = []
    for _ in range(rounds):
        before = len(critiques)
        for p in principles:
            c = p.critique(fact, draft)
            if c is not None:
                critiques.append((p.name, c))
                draft = p.revise(fact, draft, c)
        if len(critiques) == before:
            break
    return draft, critiques


def check_critique_and_revise(critique_and_revise, revision_pairs, seed: int) -> None:
    """Each principle in order critiques the current draft and revises what it finds, for
    up to ``rounds`` passes, stopping after a pass that finds nothing; every critique is
    kept with its principle's name. ``revision_pairs`` makes (revision, draft) pairs of
    the drafts that were revised and no pair of a draft that breaks nothing."""
    rng = random.Random(seed)
    facts = build_world().training_facts()
    for _ in range(4):
        principles = _principles(rng)
        fact = rng.choice(facts)
        draft = rng.choice([fact.sentence, fact.sentence + " Thank you.", fact.object])
        rounds = rng.randrange(1, 4)
        got = critique_and_revise(fact, draft, principles, rounds=rounds)
        want = _revise_oracle(fact, draft, principles, rounds)
        if not isinstance(got, tuple) or len(got) != 2 or got[0] != want[0] or \
                [tuple(c) for c in got[1]] != want[1]:
            raise mismatch(f"critique_and_revise(fact, draft, principles {[p.name for p in principles]},"
                           f" rounds={rounds})", draft, want, got)
    principles = _principles(rng)
    chosen = [rng.choice(facts) for _ in range(6)]
    prompts = [[{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": f.question}] for f in chosen]
    drafts = [rng.choice([f.sentence, f.object + " " + p.name]) for f, p in zip(chosen, principles * 6)]
    clean = _revise_oracle(chosen[0], drafts[0], principles, 2)[0]
    drafts[0] = clean if _revise_oracle(chosen[0], clean, principles, 2)[1] == [] else drafts[0]
    pairs = revision_pairs(prompts, chosen, drafts, principles)
    want = []
    for prompt, fact, draft in zip(prompts, chosen, drafts):
        revision, critiques = _revise_oracle(fact, draft, principles, 2)
        if critiques and revision != draft:
            want.append((prompt, revision, draft, fact))
    got = [(p.prompt, p.chosen, p.rejected, p.facts[0]) for p in pairs] if isinstance(
        pairs, list) else pairs
    if got != want:
        raise mismatch("revision_pairs: (prompt, chosen = revision, rejected = draft, fact) of "
                       "each revised draft", drafts, [w[1:3] for w in want],
                       [g[1:3] for g in got] if isinstance(got, list) else got)
    raises_value_error("revision_pairs with fewer facts than drafts", lambda: revision_pairs(
        prompts, chosen[:-1], drafts, principles))
