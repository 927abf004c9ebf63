"""The course's chat template: messages to control tokens and text, one format everywhere.

Hand-written infrastructure of chapter 4 (supervised fine-tuning trains on it); chapter 8
builds prompt assembly on it and the server speaks it. A conversation is a list of
OpenAI-style messages, ``{"role": ..., "content": ...}``; an assistant message may also
carry ``"thinking"`` (rendered inside ``<|think|>`` ... ``<|/think|>``, chapter 14). Each
turn is its role token, the content, and ``<|end|>``::

    <|system|>You answer ...<|end|><|user|>Where does Wren Quill live?<|end|><|assistant|>...

Content is always encoded as text (``encode_ordinary``): a message that contains
``<|assistant|>`` gets the ids of those characters, never the control token, so what a
user types cannot open a turn. ``encode_chat`` says which message and role each token
belongs to and which tokens open a turn; the loss mask of chapter 4 is built from that.
"""
from __future__ import annotations

from dataclasses import dataclass

from tinygpt.tokenizer import Tokenizer
from tinygpt.tokenizer.control import ASSISTANT, CONTROL_TOKENS, END, END_THINK, ROLES, THINK


@dataclass(frozen=True)
class Encoded:
    """A conversation's token ids, and for each token: the index of its message (-1 for the
    generation prompt), that message's role, and whether the token is a role token."""

    ids: list[int]
    message: list[int]
    role: list[str]
    opens: list[bool]

    def __len__(self) -> int:
        return len(self.ids)


def _checked(messages: list[dict]) -> list[dict]:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("a conversation is a non-empty list of messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ValueError(f"message {i}: role must be one of {sorted(ROLES)}, "
                             f"got {m.get('role') if isinstance(m, dict) else m!r}")
        if not isinstance(m.get("content"), str):
            raise ValueError(f"message {i} ({m['role']}): content must be a string")
        if "thinking" in m and (m["role"] != "assistant" or not isinstance(m["thinking"], str)):
            raise ValueError(f"message {i}: only an assistant message carries thinking, as a string")
    return list(messages)


def _pieces(message: dict) -> list[tuple[str, bool]]:
    """(text, is a control token) in the order a turn is written."""
    out = [(ROLES[message["role"]], True)]
    if "thinking" in message:
        out += [(THINK, True), (message["thinking"], False), (END_THINK, True)]
    return out + [(message["content"], False), (END, True)]


def render(messages: list[dict], generation_prompt: bool = False) -> str:
    """The conversation as text, control tokens written out; with ``generation_prompt``,
    ending in an open assistant turn for the model to complete."""
    text = "".join(t for m in _checked(messages) for t, _ in _pieces(m))
    return text + (ASSISTANT if generation_prompt else "")


def encode_chat(tokenizer: Tokenizer, messages: list[dict],
                generation_prompt: bool = False) -> Encoded:
    """Token ids of ``render(messages, generation_prompt)``, content encoded as plain text."""
    missing = [t for t in CONTROL_TOKENS if t not in tokenizer.special_tokens]
    if missing:
        raise ValueError(f"the tokenizer does not reserve the chat tokens {missing}; train it "
                         "with tinygpt.tokenizer.control.CONTROL_TOKENS")
    ids, message, role, opens = [], [], [], []
    turns = [(i, m, _pieces(m)) for i, m in enumerate(_checked(messages))]
    if generation_prompt:
        turns.append((-1, {"role": "assistant"}, [(ASSISTANT, True)]))
    for index, m, pieces in turns:
        for n, (text, control) in enumerate(pieces):
            chunk = [tokenizer.special_tokens[text]] if control else tokenizer.encode_ordinary(text)
            ids += chunk
            message += [index] * len(chunk)
            role += [m["role"]] * len(chunk)
            opens += [control and n == 0] * len(chunk)
    return Encoded(ids, message, role, opens)
