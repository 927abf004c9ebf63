"""Property checks for chapter 3 (pre-training), written once and run against anyone's code.

One module per notebook (``attention``, ``model``, ``training``, ``scale``) and what they
share (``shared``); a notebook imports its checks from here.

Notebook test cells call these on the learner's functions and classes (visible cells
with seed 0, hidden cells with fresh seeds); pytest calls the same checks on the
exported reference. Each check draws random shapes and values from ``seed`` and compares
with a well-kept library where one exists (``F.scaled_dot_product_attention``,
``F.rms_norm``, ``F.cross_entropy``, ``torch.optim.AdamW``,
``torch.nn.utils.clip_grad_norm_``) or with a plain oracle written here (RoPE with
complex numbers, attention head by head, a dense mixture of experts), and checks the
invariants: causality, relative positions, exact resume, DDP equal to one large batch.
Tolerances are per dtype (float32 1e-5, bfloat16 5e-2); failures print the largest and
mean difference. Checks run on the CPU and print nothing.

Imports: chapter 3's reference (``tinygpt.pretraining``) and nothing later.
"""
from __future__ import annotations

from tinygpt.checks.common import written_here
from tinygpt.checks.ch03.shared import random_config
from tinygpt.checks.ch03.attention import check_causal_attention, check_rope, check_self_attention
from tinygpt.checks.ch03.model import (check_block, check_gpt, check_lm_loss, check_rmsnorm,
                                       check_swiglu)
from tinygpt.checks.ch03.training import (check_adamw_update, check_checkpoint,
                                          check_clip_grad_norm, check_lr_at, check_read_shard,
                                          check_sample_batch, check_train_step)
from tinygpt.checks.ch03.scale import check_allreduce_gradients, check_load_balancing_loss, check_moe

__all__ = ["written_here", "random_config", "check_rope", "check_causal_attention",
           "check_self_attention", "check_rmsnorm", "check_swiglu", "check_block",
           "check_gpt", "check_lm_loss", "check_adamw_update", "check_lr_at",
           "check_clip_grad_norm", "check_train_step", "check_read_shard",
           "check_sample_batch", "check_checkpoint", "check_allreduce_gradients",
           "check_load_balancing_loss", "check_moe"]
