"""Every chapter 4 check rejects a plausible wrong answer (a test must be able to fail)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tinygpt.checks import ch04 as checks
from tinygpt.posttraining import sft
from conftest import seeds_rejecting


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
]


@pytest.mark.parametrize("check,units", MUTANTS, ids=lambda x: "+".join(
    getattr(u, "__name__", "fn") for u in x) if isinstance(x, tuple) else x.__name__)
def test_check_rejects_a_wrong_answer(check, units):
    failures = seeds_rejecting(check, units, 4)
    assert failures >= 3, f"{check.__name__} let a wrong answer through on {4 - failures} seeds"


def test_every_check_has_a_mutant():
    assert {c.__name__ for c, _ in MUTANTS} == {n for n in checks.__all__ if n.startswith("check_")}


def test_stubs_fail_every_check():
    def stub(*args, **kwargs):
        raise NotImplementedError

    for check, _ in MUTANTS:
        with pytest.raises((NotImplementedError, AssertionError)):
            check(stub, seed=0)
