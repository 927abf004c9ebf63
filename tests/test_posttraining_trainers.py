"""Chapter 4's trainers (reward model, DPO, GRPO) overfit what they are shown, and their
data refuse bad input.

Each trainer runs for a few dozen steps on a handful of examples with a small random
GPT over the checks' tokenizer: the reward model must order its training pairs, DPO
must widen the margin between chosen and rejected answers, GRPO must raise the reward
of a task the model can learn. Sampling many prompts at once (left-padded) must give
what each prompt gives alone.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from tinygpt.checks import ch04 as checks
from tinygpt.posttraining import data, sft
from tinygpt.posttraining.finetune import answer
from tinygpt.posttraining.preference_training import (DPOConfig, RewardConfig, dpo,
                                                      encode_pairs, reward_accuracy,
                                                      train_reward_model)
from tinygpt.posttraining.rl import GRPOConfig, grpo, sample_groups
from tinygpt.posttraining.template import encode_chat
from tinygpt.pretraining.config import GPTConfig
from tinygpt.pretraining.model import GPT
from tinygpt.tokenizer.control import END


def _model(seed: int = 0, block_size: int = 160) -> GPT:
    tok = checks.chat_tokenizer()
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=block_size, n_layer=2, n_head=2,
                         n_embd=32))


def test_bad_preference_pairs_are_refused_by_their_index():
    tok, pairs = checks.chat_tokenizer(), data.preference_pairs()[:3]
    empty = dataclasses.replace(pairs[1], rejected="  ")
    with pytest.raises(ValueError, match="preference pair 1 has an empty answer"):
        encode_pairs(tok, [pairs[0], empty], 160)
    same = dataclasses.replace(pairs[2], rejected=pairs[2].chosen)
    with pytest.raises(ValueError, match="preference pair 1 has the same answer twice"):
        encode_pairs(tok, [pairs[0], same], 160)
    with pytest.raises(ValueError, match="more than the context of 16"):
        encode_pairs(tok, pairs, 16)
    with pytest.raises(ValueError, match="no preference pairs"):
        encode_pairs(tok, [], 160)


def test_the_reward_model_learns_to_order_its_pairs():
    tok, pairs = checks.chat_tokenizer(), data.preference_pairs()[:8]
    model, history = train_reward_model(_model(), tok, pairs, RewardConfig(
        steps=60, batch_pairs=8, max_lr=3e-3, min_lr=3e-4, warmup_steps=5))
    assert history["losses"][-1] < 0.5 * history["losses"][0], history["losses"][::10]
    assert reward_accuracy(model, tok, pairs) == 1.0


def test_dpo_widens_the_margin_between_chosen_and_rejected():
    tok, pairs = checks.chat_tokenizer(), data.preference_pairs()[:8]
    policy = _model()
    _, history = dpo(policy, tok, pairs, DPOConfig(steps=40, batch_pairs=8, max_lr=3e-3,
                                                   min_lr=3e-4, warmup_steps=5))
    assert abs(history["losses"][0] - 0.6931) < 1e-3, "the policy starts as its reference"
    assert history["margin"][-1] > 1.0 and history["accuracy"][-1] == 1.0, history["margin"][::10]
    assert history["losses"][-1] < 0.3


def test_sampling_many_prompts_at_once_matches_each_prompt_alone():
    tok, model = checks.chat_tokenizer(), _model(seed=3)
    prompts = [encode_chat(tok, c[:-1], generation_prompt=True).ids
               for c, _ in data.sft_chats()[:4]]
    assert len({len(p) for p in prompts}) > 1, "prompts of different lengths: padding is used"
    groups = sample_groups(model, prompts, 2, 12, 1e-6, tok.special_tokens[END],
                           torch.Generator().manual_seed(0))  # a tiny temperature: greedy
    for prompt, group in zip(prompts, groups):
        ids = list(prompt)
        for _ in range(len(group[0])):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
        assert group[0] == group[1] == ids[len(prompt):]


def test_grpo_raises_the_reward_of_a_task_the_model_can_learn():
    """Fine-tuned to answer one of four numbers at random, the model is right a quarter of
    the time; GRPO, marked on one of them, must make it say that one."""
    tok = checks.chat_tokenizer()
    prompt = [{"role": "user", "content": "Pick a number."}]
    chats = [prompt + [{"role": "assistant", "content": n}] for n in ("3", "5", "7", "9")]
    start = _model(seed=1, block_size=32)
    rows = sft.pack(sft.chat_examples(tok, chats), 32, pad_id=0)
    opt = torch.optim.AdamW(start.parameters(), lr=1e-2)
    for _ in range(40):
        sft.sft_step(start, opt, rows, lr=1e-2)
    task = data.Task(prompt, "7", "lookup", ())
    config = GRPOConfig(steps=25, prompts_per_step=2, group_size=8, max_new_tokens=4,
                        max_lr=3e-3, min_lr=3e-4, warmup_steps=2)
    after, history = grpo(start, tok, [task] * 2, config)
    early, late = sum(history["reward"][:5]) / 5, sum(history["reward"][-5:]) / 5
    assert early < 0.5 and late > 0.8, history["reward"]
    assert history["kl"][-1] > history["kl"][0], "the policy moved away from its reference"
    assert data.is_correct(task, answer(after, tok, prompt, max_new_tokens=4))


def test_the_align_command_names_a_missing_checkpoint(tmp_path, capsys):
    from tinygpt import align

    with pytest.raises(SystemExit) as exit_:
        align.main(["--base", str(tmp_path / "nothing-here"), "--quiet"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "not a checkpoint" in err and "make train" in err, err
