"""The configuration of the course model and of its training, with named presets.

Written for chapter 3 (pre-training), infrastructure rather than an exercise. Every
later chapter reads a model's :class:`GPTConfig` back from its checkpoint
(``config.json``), so a checkpoint is self-describing. After nanoGPT's ``GPTConfig`` (a
small commented dataclass), with LLaMA's architecture choices: RoPE, RMSNorm, SwiGLU,
no biases, optionally fewer key/value heads (grouped-query attention) and, as an option,
a mixture-of-experts MLP. :class:`TrainConfig` holds how to train it; ``PRESETS`` names
the pairs the course uses: ``tiny`` for tests, ``book`` for the book page, ``cpu`` for
the default training run on a laptop, ``gpu`` for one GPU.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class GPTConfig:
    """The model's shape. ``None`` fields are derived (see the properties below)."""

    vocab_size: int = 2048     # the tokenizer's n_vocab; a multiple of 64 keeps matmuls aligned
    block_size: int = 128      # context length: the most tokens the model sees at once
    n_layer: int = 4
    n_head: int = 4            # query heads
    n_kv_head: int | None = None   # key/value heads; None: n_head (MHA), fewer: GQA
    n_embd: int = 128          # the residual stream's width
    mlp_hidden: int | None = None  # None: 8/3 n_embd rounded up to 32, the parameters of a 4x GELU MLP
    rope_base: float = 10000.0     # RoPE's base wavelength (RoFormer, LLaMA 1 and 2)
    norm_eps: float = 1e-5
    use_sdpa: bool = True      # fused F.scaled_dot_product_attention; False: the written-out one
    n_expert: int = 0          # 0: dense SwiGLU MLP; more: a mixture of that many SwiGLU experts
    top_k: int = 2             # experts per token (Mixtral routes each token to 2 of 8)
    aux_loss_weight: float = 0.01  # weight of the load-balancing loss (Switch Transformer's alpha)

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd must be a multiple of n_head, got {self.n_embd} and {self.n_head}")
        if self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head size, got n_embd / n_head = {self.head_dim}")
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_head must be a multiple of n_kv_head, got {self.n_head} and "
                             f"{self.kv_heads}")
        if self.n_expert and not 1 <= self.top_k <= self.n_expert:
            raise ValueError(f"top_k must be in [1, n_expert], got {self.top_k} of {self.n_expert}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def hidden(self) -> int:
        return self.mlp_hidden or -(-8 * self.n_embd // 3 // 32) * 32

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GPTConfig":
        """The config that :meth:`to_dict` wrote; unknown keys are an error, not ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown GPTConfig fields {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class TrainConfig:
    """How to train: the batch, the schedule, the optimizer, evaluation and the data."""

    batch_size: int = 16         # sequences per step and per process
    max_steps: int = 1000
    max_lr: float = 2e-3
    min_lr: float = 2e-4         # the cosine ends here (a tenth of the peak, as in Chinchilla)
    warmup_steps: int = 50
    weight_decay: float = 0.1    # on matrices and embeddings only, not on norm gains
    beta1: float = 0.9
    beta2: float = 0.95          # GPT-3 and LLaMA use 0.95 rather than Adam's 0.999
    eps: float = 1e-8
    grad_clip: float = 1.0
    eval_interval: int = 100     # evaluate (and checkpoint) every this many steps
    eval_batches: int = 8        # batches per loss estimate
    seed: int = 1337
    bf16: bool = True            # bf16 autocast on CUDA (ignored on the CPU)
    compile: bool = False        # torch.compile the forward pass: fused kernels (a C compiler on the CPU)
    cpu_matmul: str = "auto"     # the CPU's nn.Linear library: "onednn", "blas" (torch's default) or
                                 # "auto" (oneDNN on AMD CPUs, where MKL is slow; see cpu_matmul.py)
    corpus_bytes: int | None = None  # None: the whole course corpus
    val_fraction: float = 0.05   # held out for validation: 32k-token chunks spread evenly

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, tuple[GPTConfig, TrainConfig]] = {
    # A few thousand parameters: tests and notebook checks, seconds on any CPU.
    "tiny": (GPTConfig(vocab_size=320, block_size=32, n_layer=2, n_head=2, n_embd=32),
             TrainConfig(batch_size=4, max_steps=20, warmup_steps=4, eval_interval=10,
                         eval_batches=2, corpus_bytes=200_000, max_lr=1e-2, min_lr=1e-3)),
    # The book page's live run: about half a minute on a 2-core CPU.
    "book": (GPTConfig(vocab_size=2048, block_size=64, n_layer=4, n_head=4, n_embd=128),
             TrainConfig(batch_size=16, max_steps=250, warmup_steps=25, eval_interval=50,
                         eval_batches=8)),
    # The default run: a few minutes on a 2-core CPU (make train).
    "cpu": (GPTConfig(vocab_size=2048, block_size=128, n_layer=4, n_head=4, n_embd=128),
            TrainConfig(batch_size=16, max_steps=1000, warmup_steps=50, eval_interval=100)),
    # One GPU, about nanoGPT's shakespeare-char GPU config (6 x 384, context 256, batch 64).
    "gpu": (GPTConfig(vocab_size=2048, block_size=256, n_layer=6, n_head=6, n_embd=384),
            TrainConfig(batch_size=64, max_steps=5000, max_lr=1e-3, min_lr=1e-4,
                        warmup_steps=100, eval_interval=250, eval_batches=20)),
}
