"""What chapter 4's checks share: a tokenizer with the control tokens, random chats about
the world, random small GPTs.

Part of ``tinygpt.checks.ch04``.
"""
from __future__ import annotations

import random
from functools import lru_cache

import torch

from tinygpt.checks.ch03.shared import random_config
from tinygpt.posttraining.data import SYSTEM_PROMPT
from tinygpt.pretraining.model import GPT
from tinygpt.tokenizer import Tokenizer
from tinygpt.tokenizer.control import CONTROL_TOKENS
from tinygpt.world import build_world

IGNORE = -100  # F.cross_entropy's ignore_index, as in tinygpt.posttraining.sft


@lru_cache(maxsize=1)
def chat_tokenizer() -> Tokenizer:
    """A small tokenizer with the course's control tokens, trained on the world's sentences."""
    text = " ".join(f"{f.question} {f.sentence}" for f in build_world().facts)
    return Tokenizer.train(text, 320 + len(CONTROL_TOKENS), special_tokens=list(CONTROL_TOKENS))


def random_chat(rng: random.Random) -> list[dict]:
    """A conversation about the world: maybe a system prompt, 1-3 question-answer rounds,
    some answers with thinking, some rounds with a tool turn."""
    facts = build_world().facts
    chat = [{"role": "system", "content": SYSTEM_PROMPT}] if rng.random() < 0.7 else []
    for _ in range(rng.randrange(1, 4)):
        fact = rng.choice(facts)
        chat.append({"role": "user", "content": fact.question})
        if rng.random() < 0.2:
            chat.append({"role": "tool", "content": fact.object})
        answer = {"role": "assistant", "content": fact.sentence}
        if rng.random() < 0.3:
            answer["thinking"] = f"{fact.subject}: {fact.relation}"
        chat.append(answer)
    return chat


def tiny_gpt(rng: random.Random):
    """A random one-layer GPT over 320 tokens, context 12-24, and its config."""
    config = random_config(rng, vocab_size=320, block_size=rng.choice([12, 16, 24]), n_layer=1)
    torch.manual_seed(rng.randrange(1000))
    return config, GPT(config)
