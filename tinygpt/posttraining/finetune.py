"""Supervised fine-tuning from a chapter-3 checkpoint, answering, and exact-match scoring.

Hand-written infrastructure of chapter 4 around the graded pieces of ``sft``: the chats
are packed once, each step takes a seeded random batch of rows, the learning rate warms
up and decays as in pre-training (``lr_at``), and the result is a checkpoint in chapter
3's one format, so every later chapter loads it with ``load_model``. ``answer`` decodes
greedily until ``<|end|>`` (no KV cache: chapters 10-12 make it fast); ``exact_match``
is the share of questions whose answer states the fact's value. ``cached_sft`` builds
on demand and caches under ``tinygpt.runtime.CACHE_DIR`` by a key over the base run,
the settings and the code, as ``tinygpt.pretraining.trainer.cached_run`` does.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import re
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from tinygpt.posttraining.sft import Packed, chat_examples, pack, sft_step
from tinygpt.posttraining.template import encode_chat
from tinygpt.pretraining.checkpoint import load_model, save_checkpoint
from tinygpt.pretraining.model import GPT
from tinygpt.pretraining.optim import AdamW, lr_at, param_groups
from tinygpt.runtime import CACHE_DIR, cache_key
from tinygpt.tokenizer import Tokenizer
from tinygpt.tokenizer.control import END, EOT
from tinygpt.world import Fact


@dataclass(frozen=True)
class SFTConfig:
    """Fine-tuning settings: steps, rows per batch, the learning-rate schedule, clipping."""

    steps: int = 300
    batch_rows: int = 8
    max_lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0


def _rows(packed: Packed, index: torch.Tensor) -> Packed:
    return Packed(packed.tokens[index], packed.targets[index], packed.positions[index],
                  packed.segments[index])


def finetune(model: GPT, tokenizer: Tokenizer, chats: list[list[dict]], config: SFTConfig,
             progress: bool = False) -> tuple[GPT, dict]:
    """A fine-tuned copy of ``model`` and its history (every step's loss, seconds)."""
    model = copy.deepcopy(model).train()
    device = next(model.parameters()).device
    packed = pack(chat_examples(tokenizer, chats), model.config.block_size,
                  tokenizer.special_tokens[EOT]).to(device)
    optimizer = AdamW(param_groups(model, config.weight_decay), lr=config.max_lr)
    gen = torch.Generator().manual_seed(config.seed)
    history = {"sft": dataclasses.asdict(config), "chats": len(chats),
               "rows": packed.tokens.shape[0], "losses": [], "seconds": 0.0}
    began = time.perf_counter()
    for step in tqdm(range(config.steps), desc="fine-tuning", disable=not progress):
        index = torch.randint(0, packed.tokens.shape[0], (config.batch_rows,), generator=gen)
        lr = lr_at(step, config.max_lr, config.min_lr, config.warmup_steps, config.steps)
        loss = sft_step(model, optimizer, _rows(packed, index.to(device)), lr, config.grad_clip)
        history["losses"].append(loss.item())
    history["seconds"] = time.perf_counter() - began
    return model.eval(), history


@torch.no_grad()
def answer(model: GPT, tokenizer: Tokenizer, messages: list[dict], max_new_tokens: int = 40) -> str:
    """The model's reply to ``messages``, decoded greedily until ``<|end|>`` or the limit."""
    device = next(model.parameters()).device
    ids = encode_chat(tokenizer, messages, generation_prompt=True).ids
    end, out = tokenizer.special_tokens[END], []
    for _ in range(max_new_tokens):
        window = torch.tensor([(ids + out)[-model.config.block_size:]], device=device)
        nxt = int(model(window)[0, -1].argmax())
        if nxt == end:
            break
        out.append(nxt)
    return tokenizer.decode(out)


def states(reply: str, fact: Fact) -> bool:
    """Whether ``reply`` states the fact's value, as a whole word, case aside."""
    return re.search(rf"(?<![\w,]){re.escape(fact.object)}(?![\w,])", reply, re.IGNORECASE) is not None


def exact_match(model: GPT, tokenizer: Tokenizer, items: list[tuple[list[dict], Fact]]) -> float:
    """The share of (chat, fact) items whose reply to the chat's prompt states the fact."""
    hits = [states(answer(model, tokenizer, [m for m in chat if m["role"] != "assistant"]), fact)
            for chat, fact in items]
    return sum(hits) / len(hits)


def cached_sft(base: GPT, base_key: str, tokenizer: Tokenizer, chats: list[list[dict]],
               config: SFTConfig) -> tuple[GPT, dict]:
    """``finetune`` on the CPU, or its checkpoint from the cache (``base_key`` names the base)."""
    key = cache_key(base_key, chats, config, code=("posttraining", "pretraining", "tokenizer"))
    folder = CACHE_DIR / f"ch04-sft-{key}"
    if (folder / "history.json").exists():
        return load_model(folder), json.loads((folder / "history.json").read_text())
    model, history = finetune(base, tokenizer, chats, config)  # no widget bar in a page
    save_checkpoint(folder, model)
    tokenizer.save(folder / "tokenizer.json")
    (folder / "history.json").write_text(json.dumps(history) + "\n")
    return model, history
