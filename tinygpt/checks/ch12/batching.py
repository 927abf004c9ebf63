"""Checks for chapter 12, notebook 3: the continuous-batching scheduler.

The oracles: admission replayed step by step with the rule of the notebook (first come,
first served, the step's token budget, blocks committed for each request's whole
length), for requests whose lengths are known in advance (greedy, no stop, no end of
text, so each runs exactly ``max_tokens`` steps); and for random workloads (greedy and
seeded sampling, stop sequences, end of text, requests arriving at random steps) each
request's events against notebook 1's ``generate`` of the same request alone. After every
workload every block must be free again. Requests are stand-ins written here, with the
fields of the notebook's ``Request``. Checks print nothing.

Imports: chapters 9-12's references (``generate`` of notebook 1) and chapter 10's and
12's checks, nothing later.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from tinygpt.checks.ch10 import _random_model
from tinygpt.checks.ch12.decode import toy_tokenizer
from tinygpt.checks.common import mismatch, raises_value_error, written_here
from tinygpt.engine.decode import generate
from tinygpt.engine.sampling import SamplingParams

__all__ = ["written_here", "check_submit", "check_admission", "check_continuous"]


@dataclass(frozen=True)
class _Request:
    id: str
    prompt: list
    params: SamplingParams = SamplingParams(temperature=0.0)
    max_tokens: int = 16
    stop: tuple = ()


def _blocks(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size)


def _state(scheduler) -> tuple:
    return [r.id for r in scheduler.waiting], list(scheduler.running)


def check_submit(cls, seed: int = 0) -> None:
    """Good requests queued in order (up to the window and the cache exactly); each bad one
    refused with nothing changed."""
    rng = random.Random(seed)
    model = _random_model(rng)
    c = model.config
    block_size = rng.randrange(1, 6)
    n_blocks = rng.randrange(c.block_size // block_size // 2, c.block_size // block_size + 1)
    s = cls(model, toy_tokenizer(c.vocab_size), n_blocks=n_blocks, block_size=block_size)
    room = min(c.block_size, n_blocks * block_size)
    good = [_Request("whole", [1] * (room - 2), max_tokens=2)]
    good += [_Request(f"r{i}", [rng.randrange(c.vocab_size) for _ in range(rng.randrange(1, 5))],
                      max_tokens=rng.randrange(1, 5), stop=("ab",) * rng.randrange(0, 3)) for i in range(3)]
    for request in good:
        s.submit(request)
    want = ([r.id for r in good], [])
    if _state(s) != want:
        raise mismatch("submit queues requests in order", [r.id for r in good], want, _state(s))
    too_long = max(c.block_size, n_blocks * block_size)
    bad = [
        _Request("r1", [1]), _Request("x", []), _Request("x", [c.vocab_size]), _Request("x", [-1]),
        _Request("x", [True]), _Request("x", [1], max_tokens=0), _Request("x", [1], max_tokens=2.0),
        _Request("x", [1], stop=("a", "b", "c", "d", "e")), _Request("x", [1], stop=("",)),
        _Request("x", [1] * (c.block_size - 1), max_tokens=2),
        _Request("x", [1] * (room - 1), max_tokens=2),
        _Request("x", [1] * too_long, max_tokens=1),
    ]
    for request in bad:
        raises_value_error(f"submit({request}) (context {c.block_size}, {n_blocks} blocks of "
                           f"{block_size})", lambda: s.submit(request))
        if _state(s) != want:
            raise mismatch(f"a refused submit({request}) changed the queue", request, want, _state(s))


def _replay_admission(arrivals: dict, budget: int, n_blocks: int, block_size: int) -> list:
    """Which requests emit an event at each step, by the notebook's admission rule."""
    waiting, running, steps, k = [], {}, [], 0
    while k <= max(arrivals) or waiting or running:
        waiting += arrivals.get(k, [])
        committed = sum(_blocks(len(r.prompt) + r.max_tokens, block_size) for r, _ in running.values())
        tokens, admitted = len(running), 0
        while waiting:
            r = waiting[0]
            need = _blocks(len(r.prompt) + r.max_tokens, block_size)
            fits = tokens + len(r.prompt) <= budget or (not running and not admitted)
            if not fits or committed + need > n_blocks:
                break
            waiting.pop(0)
            tokens, committed, admitted = tokens + len(r.prompt), committed + need, admitted + 1
            running[r.id] = (r, r.max_tokens)
        steps.append(list(running))
        running = {i: (r, left - 1) for i, (r, left) in running.items() if left > 1}
        k += 1
    return steps


def check_admission(cls, seed: int = 0) -> None:
    """Which requests run at every step equals admission replayed by the rule, for
    requests arriving at random steps; no block lost."""
    rng = random.Random(seed)
    for _ in range(3):
        model = _random_model(rng)
        c = model.config
        block_size, budget = rng.randrange(1, 6), rng.randrange(4, 16)
        arrivals, requests = {}, []
        for i in range(rng.randrange(5, 11)):
            request = _Request(f"q{i}", [rng.randrange(c.vocab_size) for _ in range(rng.randrange(1, 13))],
                               max_tokens=rng.randrange(1, 7))
            requests.append(request)
            arrivals.setdefault(rng.randrange(4), []).append(request)
        largest = max(_blocks(len(r.prompt) + r.max_tokens, block_size) for r in requests)
        n_blocks = rng.randrange(largest, 2 * largest + 1)  # tight: commitments decide
        want = _replay_admission(arrivals, budget, n_blocks, block_size)
        s = cls(model, toy_tokenizer(c.vocab_size), n_blocks=n_blocks, block_size=block_size,
                max_batch_tokens=budget)
        got = []
        for k in range(len(want) + 3):
            for request in arrivals.get(k, []):
                s.submit(request)
            try:
                got.append([rid for rid, _ in s.step()])
            except ValueError as err:
                raise AssertionError(f"step {k} raised ValueError ({err}): a running request ran out "
                                     "of blocks; admission must commit each request's whole "
                                     "length") from None
        while got and not got[-1]:
            got.pop()
        if got != want:
            raise mismatch(f"the requests that run at each step (budget {budget} tokens, {n_blocks} "
                           f"blocks of {block_size})", {k: [(r.id, len(r.prompt), r.max_tokens)
                                                         for r in v] for k, v in arrivals.items()},
                           want, got)
        if s.cache.allocator.n_free != n_blocks or s.cache.tables:
            raise AssertionError(f"after every request finished, {s.cache.allocator.n_free} of "
                                 f"{n_blocks} blocks are free: blocks were not given back")


def check_continuous(cls, seed: int = 0) -> None:
    """Every request of a random workload gets the events it gets alone; every block comes back."""
    rng = random.Random(seed)
    for _ in range(2):
        model = _random_model(rng)
        c = model.config
        tok = toy_tokenizer(c.vocab_size)
        eos = rng.choice([None, rng.randrange(c.vocab_size)])
        arrivals, requests = {}, []
        for i in range(rng.randrange(3, 8)):
            params = SamplingParams(temperature=0.0) if rng.random() < 0.5 else SamplingParams(
                temperature=1.0, top_k=rng.choice([0, 5]), seed=rng.randrange(1000))
            prompt = [rng.randrange(c.vocab_size) for _ in range(rng.randrange(1, 10))]
            max_tokens = rng.randrange(1, 10)
            stop = ()
            if rng.random() < 0.4:
                text = "".join(e.text for e in generate(model, tok, prompt, params, max_tokens))
                if len(text) > 2:
                    at = rng.randrange(len(text) - 1)
                    stop = (text[at:at + 2],)
            request = _Request(f"w{i}", prompt, params, max_tokens, stop)
            requests.append(request)
            arrivals.setdefault(rng.randrange(5), []).append(request)
        block_size = rng.randrange(1, 6)
        n_blocks = rng.randrange(2 * c.block_size // block_size, 4 * c.block_size // block_size)
        s = cls(model, tok, n_blocks=n_blocks, block_size=block_size,
                max_batch_tokens=rng.randrange(8, 40), eos=eos)
        events = {r.id: [] for r in requests}
        k = 0
        while k < 5 or not s.idle:
            for request in arrivals.get(k, []):
                s.submit(request)
            for rid, event in s.step():
                events[rid].append(event)
            k += 1
            if k > 500:
                raise AssertionError("the scheduler never finished its requests")
        for r in requests:
            alone = list(generate(model, tok, r.prompt, r.params, r.max_tokens, r.stop, eos))
            if events[r.id] != alone:
                raise mismatch(f"request {r.id} served with others must get the events it gets "
                               f"alone ({r.params}, stop={r.stop!r}, eos={eos})", r.prompt,
                               [(e.token, e.text, e.finish_reason) for e in alone],
                               [(e.token, e.text, e.finish_reason) for e in events[r.id]])
        if s.cache.allocator.n_free != n_blocks or s.cache.tables:
            raise AssertionError(f"after every request finished, {s.cache.allocator.n_free} of "
                                 f"{n_blocks} blocks are free: blocks were not given back")
