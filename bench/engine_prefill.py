"""Benchmark: chapter 10's prefill against Hugging Face's LlamaForCausalLM on the same weights.

What it measures, side by side in one run, on the CPU, at 1 and at 2 threads:

* prefill throughput: prompt tokens per second (padding not counted) for a batch of
  ``--batch`` prompts of mixed lengths (uniform in ``--min-len``..``--max-len``, seeded),
  left padded. The course side is ``tinygpt.engine.prefill.prefill`` (one pass that fills
  a new KV cache); the peer is ``LlamaForCausalLM`` (transformers, SDPA attention, float32)
  called with the attention mask, position ids counted from each prompt's first token,
  and ``use_cache=True`` (it fills its own ``DynamicCache``). Both compute the logits of
  the last position only, which is all that prefill needs (``logits_to_keep=1`` for the
  peer, ``last=True`` inside ``prefill``);
* time to first token: one prompt of 64, 256 and 1024 tokens, prefill plus the argmax
  of the last logits.

Weights: a random model of the course's ``cpu`` preset shape (4 layers, 4 heads, width
128, vocabulary 2,048) with a context of 1,024 tokens so that the longest prompt fits;
time does not depend on the weights' values. The peer gets them through chapter 6's
exporter (``_peers.llama_peer``: ``tinygpt.export.hf_config`` and ``hf_state_dict``), and the script stops unless
both give the same last logits (max difference below 1e-4). Each figure is the median of
``--repeats`` runs after one warm-up, the two sides in alternating rounds. The issue's goal: prefill at 1.0x HF or more.

Run: ``make bench`` or ``.venv/bin/python bench/engine_prefill.py``.
Output: a table, then one JSON line; the same JSON, with machine info, goes to
bench/results/engine_prefill.json (read by the chapter 10 book page).
"""
from __future__ import annotations

import argparse
import dataclasses
import random

import torch
from transformers import LlamaForCausalLM

from _common import print_table, report, timed_alternating
from _peers import llama_peer
from tinygpt.engine.prefill import prefill
from tinygpt.pretraining import PRESETS
from tinygpt.pretraining.model import GPT
from tinygpt.runtime import machine_info

TTFT_LENGTHS = (64, 256, 1024)


@torch.no_grad()
def hf_prefill(hf: LlamaForCausalLM, prompts: list[list[int]]) -> torch.Tensor:
    """The peer's prefill: left padded, masked, positions per prompt, its own cache."""
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
    out = hf(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
             logits_to_keep=1)
    return out.logits[:, -1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="prompts in the prefill batch")
    parser.add_argument("--min-len", type=int, default=32, help="shortest prompt")
    parser.add_argument("--max-len", type=int, default=256, help="longest prompt")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs (median reported)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads")
    args = parser.parse_args()

    shape = dataclasses.replace(PRESETS["cpu"][0], block_size=max(TTFT_LENGTHS))
    torch.manual_seed(0)
    model = GPT(shape).eval()
    hf = llama_peer(model)
    rng = random.Random(0)
    prompts = [[rng.randrange(shape.vocab_size) for _ in range(rng.randint(args.min_len, args.max_len))]
               for _ in range(args.batch)]
    n_tokens = sum(map(len, prompts))
    gap = (prefill(model, prompts).logits - hf_prefill(hf, prompts)).abs().max().item()
    if gap > 1e-4:
        raise SystemExit(f"the course model and the peer disagree: max logit difference {gap:.2e}")
    print(f"model: {shape}\nbatch: {args.batch} prompts, {n_tokens} tokens "
          f"({min(map(len, prompts))}..{max(map(len, prompts))}); same last logits (max "
          f"difference {gap:.1e}); median of {args.repeats} runs\n")

    throughput, ttft, runs = {}, {}, {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        sides = {"course": lambda: prefill(model, prompts).logits, "hf": lambda: hf_prefill(hf, prompts)}
        timed_alternating(sides, 1)  # warm-up
        for name, (seconds, times, _) in timed_alternating(sides, args.repeats).items():
            throughput[f"{name}_{threads}t"] = n_tokens / seconds
            runs[f"prefill_{name}_{threads}t"] = [round(t, 5) for t in times]
        for n in TTFT_LENGTHS:
            prompt = [prompts[0][i % len(prompts[0])] for i in range(n)]
            sides = {"course": lambda: prefill(model, [prompt]).logits.argmax(dim=-1).tolist(),
                     "hf": lambda: hf_prefill(hf, [prompt]).argmax(dim=-1).tolist()}
            timed_alternating(sides, 1)
            for name, (seconds, times, _) in timed_alternating(sides, args.repeats).items():
                ttft[f"{name}_{n}_{threads}t"] = seconds
                runs[f"ttft_{name}_{n}_{threads}t"] = [round(t, 5) for t in times]

    rows = []
    for threads in args.threads:
        c, h = throughput[f"course_{threads}t"], throughput[f"hf_{threads}t"]
        rows.append([f"prefill, {threads} thread(s)", f"{c:,.0f} tok/s", f"{h:,.0f} tok/s", f"{c / h:.2f}x"])
        for n in TTFT_LENGTHS:
            c, h = ttft[f"course_{n}_{threads}t"], ttft[f"hf_{n}_{threads}t"]
            rows.append([f"TTFT {n} tokens, {threads} thread(s)", f"{c * 1e3:.1f} ms", f"{h * 1e3:.1f} ms",
                         f"{h / c:.2f}x"])
    print_table(["measure", "course", "HF Llama", "course speed / HF"], rows)

    summary = {"bench": "engine_prefill", "batch": args.batch, "prompt_tokens": n_tokens,
               "repeats": args.repeats,
               "tokens_per_s": {k: round(v, 1) for k, v in throughput.items()},
               "ratio_over_hf": {f"{t}t": round(throughput[f"course_{t}t"] / throughput[f"hf_{t}t"], 3)
                                 for t in args.threads},
               "ttft_ms": {k: round(v * 1e3, 2) for k, v in ttft.items()}}
    details = {"model": dataclasses.asdict(shape), "max_logit_difference": gap,
               "prompt_lengths": [len(p) for p in prompts], "runs_seconds": runs,
               "machine": machine_info(["tinygpt", "torch", "transformers"])}
    report("engine_prefill", summary, details)


if __name__ == "__main__":
    main()
