"""Property checks for chapter 4 (post-training), written once and run against anyone's code.

One module per notebook (``sft``, ``preference``, ``grpo``) and what they share
(``shared``); a notebook imports its checks from here.

Notebook test cells call these on the learner's functions and classes (visible cells
with seed 0, hidden cells with fresh seeds); pytest calls the same checks on the
exported reference. Conversations come from ``tinygpt.world`` through the course's chat
template; models are small random GPTs of chapter 3; every check compares with an
oracle written out here (plain loops, one example at a time, or the formula of the
paper that defines the loss) and checks the invariants the method rests on. Checks run
on the CPU and print nothing.

Imports: chapters 1-4's reference and nothing later.
"""
from __future__ import annotations

from tinygpt.checks.common import written_here
from tinygpt.checks.ch04.shared import chat_tokenizer, random_chat
from tinygpt.checks.ch04.sft import (check_loss_mask, check_pack, check_packed_mask,
                                     check_sft_loss, check_sft_step)
from tinygpt.checks.ch04.preference import (check_batch_completions, check_bradley_terry,
                                            check_dpo_loss, check_reward_model,
                                            check_sequence_logprobs)
from tinygpt.checks.ch04.grpo import (check_critique_and_revise, check_group_advantages,
                                      check_grpo_loss)

__all__ = ["written_here", "chat_tokenizer", "random_chat", "check_loss_mask", "check_pack",
           "check_packed_mask", "check_sft_loss", "check_sft_step", "check_batch_completions",
           "check_sequence_logprobs", "check_reward_model", "check_bradley_terry",
           "check_dpo_loss", "check_group_advantages", "check_grpo_loss",
           "check_critique_and_revise"]
