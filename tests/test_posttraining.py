"""Chapter 4's exported reference passes its own checks, and SFT keeps its promises.

The checks that grade the notebooks run here on the package, on more seeds; beside
them, what later chapters rely on: a chat without an assistant turn is refused, a
packed batch trains as its examples would one by one, and a few dozen steps make a
small model answer the chats it was fine-tuned on.
"""
from __future__ import annotations

import pytest
import torch

from tinygpt.checks import ch04 as checks
from tinygpt.posttraining import data, grpo, preference, sft
from tinygpt.posttraining.template import encode_chat
from tinygpt.pretraining.config import GPTConfig
from tinygpt.pretraining.model import GPT
from tinygpt.tokenizer.control import END
from conftest import reference_tests

REFERENCE = [
    (checks.check_loss_mask, (sft.loss_mask,)),
    (checks.check_pack, (sft.pack,)),
    (checks.check_packed_mask, (sft.packed_mask,)),
    (checks.check_sft_loss, (sft.sft_loss,)),
    (checks.check_sft_step, (sft.sft_step,)),
    (checks.check_batch_completions, (preference.batch_completions,)),
    (checks.check_sequence_logprobs, (preference.sequence_logprobs,)),
    (checks.check_reward_model, (preference.RewardModel,)),
    (checks.check_bradley_terry, (preference.bradley_terry_loss, preference.pairwise_accuracy)),
    (checks.check_dpo_loss, (preference.dpo_loss,)),
    (checks.check_group_advantages, (grpo.group_advantages,)),
    (checks.check_grpo_loss, (grpo.grpo_loss,)),
    (checks.check_critique_and_revise, (grpo.critique_and_revise, grpo.revision_pairs)),
]


test_every_check_is_run_on_the_reference, test_reference_passes_its_checks = \
    reference_tests(REFERENCE, checks, range(12))


def test_a_chat_without_an_assistant_turn_is_refused_by_its_index():
    chats = [c for c, _ in data.sft_chats()[:2]] + [[{"role": "user", "content": "hello?"}]]
    with pytest.raises(ValueError, match="chat 2 has no assistant turn"):
        sft.chat_examples(checks.chat_tokenizer(), chats)


def test_fine_tuning_makes_a_small_model_answer_its_chats():
    tok = checks.chat_tokenizer()
    chats = [c for c, _ in data.sft_chats()[:6]]
    examples = sft.chat_examples(tok, chats)
    config = GPTConfig(vocab_size=tok.n_vocab, block_size=256, n_layer=2, n_head=2, n_embd=64)
    torch.manual_seed(0)
    model = GPT(config)
    batch = sft.pack(examples, config.block_size, pad_id=0)
    assert batch.tokens.shape[0] < len(chats), "several chats share a row"
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        sft.sft_step(model, opt, batch, lr=3e-3)
    end = tok.special_tokens[END]
    for chat in chats:
        ids = encode_chat(tok, chat[:-1], generation_prompt=True).ids
        with torch.no_grad():
            for _ in range(40):
                nxt = int(model(torch.tensor([ids]))[0, -1].argmax())
                ids.append(nxt)
                if nxt == end:
                    break
        produced = tok.decode(ids[len(encode_chat(tok, chat[:-1], generation_prompt=True).ids):])
        assert produced == chat[-1]["content"] + END, (chat[-1]["content"], produced)
