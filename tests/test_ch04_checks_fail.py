"""Every chapter 4 check rejects a plausible wrong answer (a test must be able to fail)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tinygpt.checks import ch04 as checks
from tinygpt.posttraining import grpo, preference, sft
from conftest import mutant_tests


def _mask_with_role_tokens(encoded):  # trains on <|assistant|> too
    return torch.tensor([r == "assistant" for r in encoded.role])


def _mask_without_end(encoded):  # never learns to stop
    tok = checks.chat_tokenizer()
    end = tok.special_tokens["<|end|>"]
    return sft.loss_mask(encoded) & torch.tensor([i != end for i in encoded.ids])


def _pack_positions_run_on(examples, block_size, pad_id):  # RoPE counts along the row
    packed = sft.pack(examples, block_size, pad_id)
    packed.positions = torch.arange(block_size).expand_as(packed.tokens).clone()
    return packed


def _pack_unmasked_targets(examples, block_size, pad_id):  # learns the user's words too
    return sft.pack([(ids, [True] * len(ids)) for ids, _ in examples], block_size, pad_id)


def _causal_only(segments):  # examples in a row see each other
    t = segments.shape[1]
    return torch.ones(t, t, dtype=torch.bool).tril().expand(segments.shape[0], t, t).clone()


def _loss_without_the_mask(model, packed):
    logits = model(packed.tokens, positions=packed.positions)
    return F.cross_entropy(logits.flatten(0, 1).float(), packed.targets.flatten(), ignore_index=-100)


def _loss_mean_of_rows(model, packed):  # each row's mean, then their mean: short rows weigh more
    logits = model(packed.tokens, positions=packed.positions, mask=sft.packed_mask(packed.segments))
    return torch.stack([F.cross_entropy(l.float(), t, ignore_index=-100)
                        for l, t in zip(logits, packed.targets)]).mean()


def _step_without_clipping(model, optimizer, packed, lr, clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss = sft.sft_loss(model, packed)
    loss.backward()
    optimizer.step()
    return loss.detach()


def _step_keeping_old_gradients(model, optimizer, packed, lr, clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = sft.sft_loss(model, packed)
    loss.backward()
    sft.clip_grad_norm(model.parameters(), clip)
    optimizer.step()
    return loss.detach()


def _batch_left_padded(prompts, completions, pad_id, block_size):  # padding before the prompt
    b = preference.batch_completions(prompts, completions, pad_id, block_size)
    for i, n in enumerate(b.lengths.tolist()):
        b.tokens[i] = b.tokens[i].roll(b.tokens.shape[1] - n)
        b.completion[i] = b.completion[i].roll(b.tokens.shape[1] - n)
    return b


def _batch_allowing_empty(prompts, completions, pad_id, block_size):  # a silent zero later
    keep = [i for i, c in enumerate(completions) if c] or [0]
    return preference.batch_completions([prompts[i] for i in keep],
                                        [completions[i] or [pad_id] for i in keep], pad_id,
                                        block_size)


def _logprobs_with_prompt(model, batch):  # scores the prompt as if the model had written it
    logits = model(batch.tokens[:, :-1]).float()
    picked = logits.log_softmax(-1).gather(-1, batch.tokens[:, 1:, None]).squeeze(-1)
    real = torch.arange(batch.tokens.shape[1] - 1)[None] < (batch.lengths - 1)[:, None]
    total = picked.masked_fill(~real, 0.0).sum(-1)
    return total, total / real.sum(-1)


def _logprobs_off_by_one(model, batch):  # logits at t scored against the token at t
    logits = model(batch.tokens).float().log_softmax(-1)
    picked = logits.gather(-1, batch.tokens[..., None]).squeeze(-1)
    total = picked.masked_fill(~batch.completion, 0.0).sum(-1)
    return total, total / batch.completion.sum(-1)


class _RewardAtLastColumn(preference.RewardModel):  # reads the padding of shorter rows
    def forward(self, tokens, lengths):
        return self.head(self.trunk(tokens)[:, -1]).squeeze(-1)


class _RewardFrozenTrunk(preference.RewardModel):  # trains the head only
    def forward(self, tokens, lengths):
        with torch.no_grad():
            hidden = self.trunk(tokens)
        return self.head(hidden[torch.arange(tokens.shape[0]), lengths - 1]).squeeze(-1)


def _bt_naive(r_chosen, r_rejected):  # overflows at large margins
    return torch.log(1 + torch.exp(-(r_chosen - r_rejected))).mean()


def _bt_swapped(r_chosen, r_rejected):
    return -F.logsigmoid(r_rejected - r_chosen).mean()


def _accuracy_ties_count(r_chosen, r_rejected):
    return (r_chosen >= r_rejected).float().mean().item()


def _dpo_without_reference(pc, pr, rc, rr, beta=0.1):  # a plain preference likelihood
    loss = -F.logsigmoid(beta * (pc - pr)).mean()
    return loss, (beta * (pc - rc)).detach(), (beta * (pr - rr)).detach()


def _dpo_beta_outside(pc, pr, rc, rr, beta=0.1):
    loss = -beta * F.logsigmoid((pc - rc.detach()) - (pr - rr.detach())).mean()
    return loss, (beta * (pc - rc)).detach(), (beta * (pr - rr)).detach()


def _dpo_reference_trained(pc, pr, rc, rr, beta=0.1):  # gradient flows into the reference
    loss = -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()
    return loss, (beta * (pc - rc)).detach(), (beta * (pr - rr)).detach()


def _advantages_population_std(rewards, eps=1e-4):  # std over G, not G - 1
    return (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True, unbiased=False) + eps)


def _advantages_over_the_batch(rewards, eps=1e-4):  # one baseline for every prompt
    return (rewards - rewards.mean()) / (rewards.std() + eps)


def _grpo_unclipped(logp, old, ref, adv, mask, clip_eps=0.2, beta=0.04):
    return grpo.grpo_loss(logp, old, ref, adv, mask, clip_eps=1e9, beta=beta)


def _grpo_token_mean(logp, old, ref, adv, mask, clip_eps=0.2, beta=0.04):  # DAPO's average
    ratio = torch.exp(logp - old.detach())
    a = adv[:, None]
    surrogate = torch.minimum(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)
    log_r = ref.detach() - logp
    kl = torch.exp(log_r) - log_r - 1
    m = mask.to(logp.dtype)
    return (-(surrogate - beta * kl) * m).sum() / m.sum(), (kl.detach() * m).sum() / m.sum()


def _grpo_kl_reversed(logp, old, ref, adv, mask, clip_eps=0.2, beta=0.04):  # KL sign slip
    return grpo.grpo_loss(logp, old, ref, adv, mask, clip_eps=clip_eps, beta=-beta)


def _grpo_old_not_detached(logp, old, ref, adv, mask, clip_eps=0.2, beta=0.04):
    ratio = torch.exp(logp - old)
    a = adv[:, None]
    surrogate = torch.minimum(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)
    log_r = ref.detach() - logp
    kl = torch.exp(log_r) - log_r - 1
    m = mask.to(logp.dtype)
    return ((-(surrogate - beta * kl) * m).sum(1) / m.sum(1)).mean(), \
        ((kl.detach() * m).sum(1) / m.sum(1)).mean()


def _revise_one_pass(fact, draft, principles, rounds=2):
    return grpo.critique_and_revise(fact, draft, principles, rounds=1)


def _revise_reading_the_draft(fact, draft, principles, rounds=2):  # each principle sees the original
    critiques, revised = [], draft
    for _ in range(rounds):
        found = False
        for p in principles:
            c = p.critique(fact, draft)
            if c is not None:
                critiques.append((p.name, c))
                revised = p.revise(fact, revised, c)
                found = True
        draft = revised
        if not found:
            break
    return revised, critiques


def _pairs_keeping_clean_drafts(prompts, facts, drafts, principles):  # pairs a draft with itself
    if not len(prompts) == len(facts) == len(drafts):
        raise ValueError("a prompt and a fact per draft")
    return [grpo.PreferencePair(p, grpo.critique_and_revise(f, d, principles)[0], d, "revised", (f,))
            for p, f, d in zip(prompts, facts, drafts)]

MUTANTS = [
    (checks.check_loss_mask, (_mask_with_role_tokens,)),
    (checks.check_loss_mask, (_mask_without_end,)),
    (checks.check_pack, (_pack_positions_run_on,)),
    (checks.check_pack, (_pack_unmasked_targets,)),
    (checks.check_packed_mask, (_causal_only,)),
    (checks.check_sft_loss, (_loss_without_the_mask,)),
    (checks.check_sft_loss, (_loss_mean_of_rows,)),
    (checks.check_sft_step, (_step_without_clipping,)),
    (checks.check_sft_step, (_step_keeping_old_gradients,)),
    (checks.check_batch_completions, (_batch_left_padded,)),
    (checks.check_batch_completions, (_batch_allowing_empty,)),
    (checks.check_sequence_logprobs, (_logprobs_with_prompt,)),
    (checks.check_sequence_logprobs, (_logprobs_off_by_one,)),
    (checks.check_reward_model, (_RewardAtLastColumn,)),
    (checks.check_reward_model, (_RewardFrozenTrunk,)),
    (checks.check_bradley_terry, (_bt_naive, preference.pairwise_accuracy)),
    (checks.check_bradley_terry, (_bt_swapped, preference.pairwise_accuracy)),
    (checks.check_bradley_terry, (preference.bradley_terry_loss, _accuracy_ties_count)),
    (checks.check_dpo_loss, (_dpo_without_reference,)),
    (checks.check_dpo_loss, (_dpo_beta_outside,)),
    (checks.check_dpo_loss, (_dpo_reference_trained,)),
    (checks.check_group_advantages, (_advantages_population_std,)),
    (checks.check_group_advantages, (_advantages_over_the_batch,)),
    (checks.check_grpo_loss, (_grpo_unclipped,)),
    (checks.check_grpo_loss, (_grpo_token_mean,)),
    (checks.check_grpo_loss, (_grpo_kl_reversed,)),
    (checks.check_grpo_loss, (_grpo_old_not_detached,)),
    (checks.check_critique_and_revise, (_revise_one_pass, grpo.revision_pairs)),
    (checks.check_critique_and_revise, (_revise_reading_the_draft, grpo.revision_pairs)),
    (checks.check_critique_and_revise, (grpo.critique_and_revise, _pairs_keeping_clean_drafts)),
]


test_check_rejects_a_wrong_answer, test_every_check_has_a_mutant, test_stubs_fail_every_check = \
    mutant_tests(MUTANTS, checks)
