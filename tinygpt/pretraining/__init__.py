"""Chapter 3, pre-training: the course GPT, its optimizer, data, checkpoints and DDP.

Generated from the chapter's solution notebooks (first line "Generated"):
``attention`` (RoPE, causal and grouped-query attention), ``layers`` (RMSNorm, SwiGLU),
``model`` (block, GPT, loss), ``optim`` (AdamW, schedule, clipping), ``step`` (one
training step), ``data`` (token shards), ``checkpoint`` (safetensors + JSON, resume),
``distributed`` (torchrun set-up, gradient averaging) and ``moe`` (mixture of experts).
Written here, as infrastructure: ``config`` (the model and training configs, with
presets), ``prepare`` (the tokenizer and token shards of the course corpus, cached) and
``trainer`` (the training loop that wires the steps together, the sampler, cached runs).
The command line is the driver ``tinygpt.train``; the CPU's matmul library, which the
loop can swap in, is ``tinygpt.kernels.cpu_matmul``.
"""
from tinygpt.pretraining.checkpoint import load_model, save_checkpoint
from tinygpt.pretraining.config import PRESETS, GPTConfig, TrainConfig
from tinygpt.pretraining.model import GPT, lm_loss

__all__ = ["GPT", "GPTConfig", "TrainConfig", "PRESETS", "lm_loss", "load_model",
           "save_checkpoint"]
