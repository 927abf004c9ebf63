"""Checks for chapter 12, notebook 1: the stop matcher and the decode loop.

The oracles: the stop rule replayed on the whole text seen so far after every push
(the earliest stop cuts the answer; otherwise only the longest end of the text that
begins a stop is held back), and for ``generate`` the same request recomputed without a
cache, one full forward of the whole sequence per token, sampled with chapter 11's
``next_tokens`` from the same seed, its bytes decoded with chapter 9's rule for a
stream (complete characters only). Models are chapter 10's random small GPTs; the
tokenizer is a toy whose ids are bytes, some of them halves of multi-byte characters.
Checks print nothing.

Imports: chapters 9-11's references and chapter 10's checks, nothing later.
"""
from __future__ import annotations

import random

import torch

from tinygpt.checks.ch10 import _random_model, refused_before_work
from tinygpt.checks.common import mismatch, raises_value_error, written_here
from tinygpt.engine.sampling import SamplingBatch, SamplingParams, next_tokens
from tinygpt.engine.tokenization import incomplete_tail

__all__ = ["written_here", "toy_tokenizer", "check_stop_matcher", "check_generate"]

PIECES = [b"\xc3", b"\xa9", b"\xf0\x9f", b"\x98\x80", "é".encode(), b" ", b"\n", b"ab", b"ba",
          b", ", b"\xe2\x82", b"\xac"]  # halves of "é", of "😀", of "€"


class ToyTokenizer:
    """Ids as bytes: a few halves of multi-byte characters, then letters."""

    def __init__(self, vocab_size: int):
        self.vocab = {i: PIECES[i] if i < len(PIECES) else bytes([97 + (i - len(PIECES)) % 26])
                      for i in range(vocab_size)}

    def decode(self, ids: list[int]) -> str:
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")


def toy_tokenizer(vocab_size: int = 64) -> ToyTokenizer:
    return ToyTokenizer(vocab_size)


def _held(text: str, stops: list[str]) -> int:
    return max((k for s in stops for k in range(1, min(len(s) - 1, len(text)) + 1)
                if text.endswith(s[:k])), default=0)


def _cut(text: str, stops: list[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def check_stop_matcher(cls, seed: int = 0) -> None:
    """After every push, what was sent equals the rule replayed on all the text so far;
    a stop split over pushes is caught and none of it sent; bad stops refused."""
    rng = random.Random(seed)
    for _ in range(40):
        alphabet = rng.choice(["ab", "abc \n", "xyé😀"])
        stops = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 5)))
                 for _ in range(rng.randrange(0, 5))]
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30)))
        matcher = cls(tuple(stops) if rng.random() < 0.3 else list(stops))
        sent, seen, cut = "", "", None
        while seen != text:
            chunk = text[len(seen):len(seen) + rng.randrange(0, 5)]
            seen += chunk
            sent += matcher.push(chunk)
            if cut is None:
                cut = _cut(seen, stops)
            want = seen[:cut] if cut is not None else seen[:len(seen) - _held(seen, stops)]
            if sent != want or bool(matcher.stopped) != (cut is not None):
                raise mismatch(f"StopMatcher({stops!r}): after pushing {seen!r} piece by piece, "
                               "what was sent (and stopped)", seen, (want, cut is not None),
                               (sent, matcher.stopped))
        sent += matcher.flush()
        want = text[:cut] if cut is not None else text
        if sent != want:
            raise mismatch(f"StopMatcher({stops!r}): everything sent after flush", text, want, sent)
    for bad in (["a", "b", "c", "d", "e"], [""], ["a", ""], [3], [None]):
        raises_value_error(f"StopMatcher({bad!r})", lambda: cls(bad))


def _oracle(model, tokenizer, prompt, params, max_tokens, stops, eos):
    """Tokens, text, finish reason and "ended by end of text" of the request, recomputed
    without a cache."""
    vocab = model.config.vocab_size
    batch = SamplingBatch.build([params], vocab)
    seen = torch.zeros(1, vocab, dtype=torch.bool)
    seen[0, prompt] = True
    counts = torch.zeros(1, vocab, dtype=torch.long)
    ids, out, data = list(prompt), [], b""
    for _ in range(max_tokens):
        with torch.no_grad():
            logits = model(torch.tensor([ids]))[:, -1]
        t = next_tokens(logits, batch, seen, counts).item()
        if t == eos:
            text = data.decode("utf-8", errors="replace")
            cut = _cut(text, stops)
            return out, text[:cut], "stop", True
        ids.append(t)
        out.append(t)
        seen[0, t] = True
        counts[0, t] += 1
        data += tokenizer.vocab[t]
        visible = data[:len(data) - incomplete_tail(data)].decode("utf-8", errors="replace")
        cut = _cut(visible, stops)
        if cut is not None:
            return out, visible[:cut], "stop", False
    text = data.decode("utf-8", errors="replace")
    cut = _cut(text, stops)
    return out, text[:cut], "stop" if cut is not None else "length", False


def check_generate(fn, seed: int = 0) -> None:
    """Tokens, streamed text and finish reasons equal a request recomputed without a cache
    (greedy and seeded sampling; stops that fire, span tokens or never occur; end of
    text); one event per token; bad requests refused before any model work."""
    rng = random.Random(seed)
    for trial in range(4):
        model = _random_model(rng)
        tokenizer = toy_tokenizer(model.config.vocab_size)
        prompt = [rng.randrange(model.config.vocab_size) for _ in range(rng.randrange(1, 8))]
        params = SamplingParams(temperature=0.0) if trial % 2 == 0 else SamplingParams(
            temperature=0.9, top_k=rng.choice([0, 8]), seed=rng.randrange(1000))
        max_tokens = rng.randrange(1, 12)
        tokens, text, *_ = _oracle(model, tokenizer, prompt, params, max_tokens, [], None)
        stops = []
        if trial >= 1 and len(text) >= 2:  # a stop cut out of the answer itself: it fires
            start = rng.randrange(len(text) - 1)
            stops = [text[start:start + rng.randrange(1, 4)], "never" * 2][:rng.randrange(1, 3)]
        eos = tokens[rng.randrange(len(tokens))] if trial == 3 else None
        *want, by_eos = _oracle(model, tokenizer, prompt, params, max_tokens, stops, eos)
        events = list(fn(model, tokenizer, list(prompt), params, max_tokens=max_tokens, stop=stops, eos=eos))
        got = [[e.token for e in events if e.token is not None], "".join(e.text for e in events),
               events[-1].finish_reason if events else None]
        what = (f"generate(prompt={prompt}, {params}, max_tokens={max_tokens}, stop={stops!r}, "
                f"eos={eos})")
        if got != want:
            raise mismatch(f"{what}: [tokens, text, finish_reason]", prompt, want, got)
        if any(e.finish_reason is not None for e in events[:-1]) or len(events) != len(want[0]) + by_eos:
            raise mismatch(f"{what}: one event per token (and one more, with no token, when end "
                           "of text ends the answer); only the last has a finish_reason", prompt,
                           len(want[0]) + by_eos, [(e.token, e.finish_reason) for e in events])
    model = _random_model(rng)
    tokenizer, c = toy_tokenizer(model.config.vocab_size), model.config
    for what, call in [
        ("generate with max_tokens=0", lambda: fn(model, tokenizer, [1], max_tokens=0)),
        ("generate with five stop sequences", lambda: fn(model, tokenizer, [1], max_tokens=2,
                                                         stop=["a", "b", "c", "d", "e"])),
        ("generate with an empty prompt", lambda: fn(model, tokenizer, [], max_tokens=2)),
        (f"generate with a prompt of {c.block_size - 2} tokens and max_tokens=3 "
         f"(context {c.block_size})", lambda: fn(model, tokenizer, [1] * (c.block_size - 2), max_tokens=3)),
    ]:
        refused_before_work(what, model, call)

