"""The Hugging Face peers: GPT-2 for the training benchmarks (pretraining_step,
pretraining_mfu), Llama on the course model's own weights for the serving ones
(engine_prefill, engine_decode).

Not a benchmark itself. ``llama_peer`` gives a course ``GPT``'s weights to
``LlamaForCausalLM`` (SDPA attention, float32) through chapter 6's exporter. ``gpt2_peer`` builds ``GPT2LMHeadModel`` at a given shape without
dropout, with ``torch.optim.AdamW`` over the same two groups as the course's
``param_groups`` (matrices decayed, vectors not), and returns it with a function that runs
one training step: zero the gradients, forward with ``labels = input_ids`` (the model
shifts the targets), backward, clip the gradient norm, step. ``onednn_gpt2`` runs its
matmuls (the ``Conv1D`` layers, whose weights are stored (in, out), and the tied head)
on the course's oneDNN linears, so that a benchmark can also compare the two models on
the same matmul library.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import types

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.pytorch_utils import Conv1D

from tinygpt.export import hf_config, hf_state_dict
from tinygpt.kernels.cpu_matmul import linear, onednn_linears, swapped_class
from tinygpt.pretraining.model import GPT


def llama_peer(model: GPT) -> LlamaForCausalLM:
    """The same weights in transformers' Llama, SDPA attention, float32, eval mode."""
    config = hf_config(model, types.SimpleNamespace(special_tokens={}))  # no tokenizer: no EOT id
    hf = LlamaForCausalLM(LlamaConfig(**config, attn_implementation="sdpa"))
    hf.load_state_dict(hf_state_dict(model), strict=False)  # the tied lm_head comes with embed
    return hf.eval()


class _OneDNNConv1D(Conv1D):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight.t(), self.bias)


@contextmanager
def onednn_gpt2(model: GPT2LMHeadModel) -> Iterator[int]:
    """Inside the block, ``model``'s Conv1D layers and head run on oneDNN; yields how many."""
    convs = [m for m in model.modules() if type(m) is Conv1D]
    with onednn_linears(model, "onednn") as heads, swapped_class(convs, _OneDNNConv1D) as n:
        yield heads + n


def gpt2_peer(vocab_size: int, block_size: int, n_embd: int, n_layer: int, n_head: int,
              lr: float, betas: tuple[float, float], weight_decay: float, clip: float,
              device: str = "cpu", amp: torch.dtype | None = None, compile_: bool = False
              ) -> tuple[GPT2LMHeadModel, Callable[[torch.Tensor], torch.Tensor]]:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=block_size,
                                       n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).to(device)
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=lr, betas=betas)
    forward = torch.compile(model) if compile_ else model

    def step(batch: torch.Tensor) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=batch.device.type, dtype=amp, enabled=amp is not None):
            loss = forward(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        return loss.detach()
    return model, step
