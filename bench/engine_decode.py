"""Benchmark: chapter 12's decode loop against Hugging Face's ``generate`` on the same weights.

What it measures, side by side in one run, on the CPU at one thread:

* batch-1 greedy decode: tokens per second of one request, a ``--prompt``-token prompt and
  ``--new`` generated tokens, prefill included: the course's ``generate`` (chapter 10's
  KV cache, chapter 11's sampler at temperature 0, chapter 9's streaming detokeniser and
  the stop matcher, one event per token) against ``LlamaForCausalLM.generate`` (greedy,
  ``min_new_tokens`` = ``max_new_tokens`` so that both write the same number of tokens,
  its ``DynamicCache``). The script stops unless both pick the same tokens;
* the cache's speed-up: ``--long`` greedy tokens through ``generate`` against the same
  tokens recomputed, one full forward of the whole sequence per token (chapter 3's
  model, no cache); both pick the same tokens (checked);
* continuous batching: ``--requests`` requests of mixed lengths (prompts of 16-128
  tokens, answers of 16-256, seeded), all submitted at once to the ``Scheduler`` (paged
  cache of 16-token blocks), against the same requests one after another through
  ``generate``: aggregate generated tokens per second, the same tokens checked request by
  request;
* KV memory of those requests at their full lengths: the paged cache (whole blocks) against
  chapter 10's dense cache, which reserves the longest request's length for every row.

Weights: a random model of the course's ``cpu`` preset shape (4 layers, 4 heads, width
128, vocabulary 2,048) with a context of 1,024 tokens; time does not depend on the
weights' values. Text: the checks' toy tokenizer (one id, one short byte string), since
a random model's ids have no text anyway. The peer gets the weights through chapter 6's
exporter (``_peers.llama_peer``). Each figure is the median of ``--repeats`` runs after a
warm-up, the course and the peer in alternating rounds (the recomputed and the batched
runs: one run each). The issue's goals: batch-1 decode
at 1.5x HF's tokens/s or more; the cache at least 5x faster than recomputing at 512
tokens; continuous batching at 6x the requests run one after another; paged memory at
0.6x dense or less.

Run: ``make bench`` or ``.venv/bin/python bench/engine_decode.py``.
Output: a table, then one JSON line; the same JSON, with machine info, goes to
bench/results/engine_decode.json (read by the chapter 12 book page).
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import time

import torch

from _common import print_table, report, timed, timed_alternating
from _peers import llama_peer
from tinygpt.checks.ch12.decode import toy_tokenizer
from tinygpt.engine.decode import generate
from tinygpt.engine.kvcache import KVCache
from tinygpt.engine.paged import memory_bytes
from tinygpt.engine.scheduler import Request, Scheduler
from tinygpt.pretraining import PRESETS
from tinygpt.pretraining.model import GPT
from tinygpt.runtime import machine_info


def course_tokens(model, tokenizer, prompt: list[int], n: int) -> list[int]:
    return [e.token for e in generate(model, tokenizer, prompt, max_tokens=n)]


@torch.no_grad()
def hf_tokens(hf, prompt: list[int], n: int) -> list[int]:
    ids = torch.tensor([prompt])
    out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                      do_sample=False, pad_token_id=0)
    return out[0, len(prompt):].tolist()


@torch.no_grad()
def recomputed_tokens(model, prompt: list[int], n: int) -> list[int]:
    ids = list(prompt)
    for _ in range(n):
        ids.append(model(torch.tensor([ids]))[0, -1].argmax().item())
    return ids[len(prompt):]


def batched(model, tokenizer, requests: list[Request]) -> dict[str, list[int]]:
    """Every request submitted at once, served by continuous batching to the end."""
    scheduler = Scheduler(model, tokenizer, n_blocks=1024, block_size=16, max_batch_tokens=2048)
    for request in requests:
        scheduler.submit(request)
    tokens = {r.id: [] for r in requests}
    while not scheduler.idle:
        for rid, event in scheduler.step():
            tokens[rid].append(event.token)
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--prompt", type=int, default=32, help="prompt tokens")
    parser.add_argument("--new", type=int, default=128, help="generated tokens, batch-1 comparison")
    parser.add_argument("--long", type=int, default=512, help="generated tokens, cache against recompute")
    parser.add_argument("--requests", type=int, default=16, help="concurrent requests, continuous batching")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs (median reported)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    shape = dataclasses.replace(PRESETS["cpu"][0], block_size=1024)
    torch.manual_seed(0)
    model = GPT(shape).eval()
    hf, tokenizer = llama_peer(model), toy_tokenizer(shape.vocab_size)
    rng = random.Random(0)
    prompt = [rng.randrange(shape.vocab_size) for _ in range(args.prompt)]

    ours, theirs = course_tokens(model, tokenizer, prompt, args.new), hf_tokens(hf, prompt, args.new)
    if ours != theirs:
        raise SystemExit(f"the course loop and HF generate disagree at token "
                         f"{next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)}")
    rounds = timed_alternating({"course": lambda: course_tokens(model, tokenizer, prompt, args.new),
                                "hf": lambda: hf_tokens(hf, prompt, args.new)}, args.repeats)
    seconds = {name: median for name, (median, _, _) in rounds.items()}
    runs_course, runs_hf = rounds["course"][1], rounds["hf"][1]
    long_cached = course_tokens(model, tokenizer, prompt, args.long)
    seconds["cached_long"], runs_long, _ = timed(lambda: course_tokens(model, tokenizer, prompt, args.long),
                                                 args.repeats)
    began = time.perf_counter()
    long_recomputed = recomputed_tokens(model, prompt, args.long)
    seconds["recomputed_long"] = time.perf_counter() - began
    if long_recomputed != long_cached:
        raise SystemExit("the cached loop and recomputing disagree")

    requests = [Request(f"r{i}", [rng.randrange(shape.vocab_size) for _ in range(rng.randint(16, 128))],
                        max_tokens=rng.randint(16, 256)) for i in range(args.requests)]
    n_generated = sum(r.max_tokens for r in requests)
    began = time.perf_counter()
    one_by_one = {r.id: course_tokens(model, tokenizer, r.prompt, r.max_tokens) for r in requests}
    seconds["one_by_one"] = time.perf_counter() - began
    began = time.perf_counter()
    together = batched(model, tokenizer, requests)
    seconds["continuous"] = time.perf_counter() - began
    if together != one_by_one:
        raise SystemExit("continuous batching and the requests one by one disagree")
    lengths = [len(r.prompt) + r.max_tokens for r in requests]
    memory = memory_bytes(lengths, max(lengths), 16, KVCache.for_model(model, 1, 1).bytes_per_token())

    tps = {"course": args.new / seconds["course"], "hf": args.new / seconds["hf"],
           "one_by_one": n_generated / seconds["one_by_one"], "continuous": n_generated / seconds["continuous"],
           "cached_long": args.long / seconds["cached_long"],
           "recomputed_long": args.long / seconds["recomputed_long"]}
    ratio_hf = tps["course"] / tps["hf"]
    speedup = seconds["recomputed_long"] / seconds["cached_long"]
    batching = seconds["one_by_one"] / seconds["continuous"]
    paged_over_dense = memory["paged"] / memory["dense"]
    print(f"model: {shape}\nprompt {args.prompt} tokens; same greedy tokens from every side (checked)\n")
    print_table(["measure", "course", "peer", "ratio"], [
        [f"batch-1 greedy, {args.new} tokens (peer: HF generate)", f"{tps['course']:,.0f} tok/s",
         f"{tps['hf']:,.0f} tok/s", f"{ratio_hf:.2f}x"],
        [f"{args.long} tokens, cache (peer: recompute every step)", f"{tps['cached_long']:,.0f} tok/s",
         f"{tps['recomputed_long']:,.1f} tok/s", f"{speedup:.1f}x"],
        [f"{args.requests} requests, continuous batching (peer: one by one)",
         f"{tps['continuous']:,.0f} tok/s", f"{tps['one_by_one']:,.0f} tok/s", f"{batching:.1f}x"],
        [f"KV memory of those {args.requests}, paged (peer: dense)", f"{memory['paged'] / 2**20:.1f} MiB",
         f"{memory['dense'] / 2**20:.1f} MiB", f"{paged_over_dense:.2f}x"],
    ])
    summary = {"bench": "engine_decode", "prompt_tokens": args.prompt, "new_tokens": args.new,
               "long_tokens": args.long, "repeats": args.repeats,
               "tokens_per_s": {k: round(v, 1) for k, v in tps.items()},
               "ratio_over_hf_generate": round(ratio_hf, 3),
               "cache_speedup_over_recompute": round(speedup, 2),
               "requests": args.requests, "generated_tokens": n_generated,
               "batching_speedup_over_one_by_one": round(batching, 2),
               "kv_mib": {k: round(v / 2**20, 2) for k, v in memory.items()},
               "paged_over_dense_memory": round(paged_over_dense, 3)}
    details = {"model": dataclasses.asdict(shape), "threads": 1,
               "runs_seconds": {"course": runs_course, "hf": runs_hf, "cached_long": runs_long,
                                "recomputed_long": [seconds["recomputed_long"]],
                                "one_by_one": [seconds["one_by_one"]], "continuous": [seconds["continuous"]]},
               "request_lengths": lengths,
               "machine": machine_info(["tinygpt", "torch", "transformers"])}
    report("engine_decode", summary, details)


if __name__ == "__main__":
    main()
