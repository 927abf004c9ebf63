"""Benchmark: training-step throughput, the course GPT against Hugging Face GPT2LMHeadModel.

What it measures: wall time (``time.perf_counter``) of whole training steps (zero the
gradients, forward, next-token loss, backward, clip the gradient norm to 1, AdamW
step) at nanoGPT's documented CPU config (its README, "I only have a MacBook": 4 layers,
4 heads, 128 wide, context 64, batch 12, dropout 0, on character-level Shakespeare, 65
characters), for

* the course model: ``tinygpt.pretraining.GPT`` (RoPE, RMSNorm, SwiGLU, fused SDPA
  attention, tied embeddings) with the course's ``AdamW`` and ``train_step``, its linear
  layers on the matmul library the course's trainer picks here (``cpu_matmul="auto"``:
  oneDNN on AMD CPUs, torch's BLAS, MKL, elsewhere);
* ``transformers.GPT2LMHeadModel`` at the same width, depth, heads, context and vocabulary
  (learned positions, LayerNorm, GELU, biases, tied embeddings; ``labels=input_ids``
  shifts the targets as the course's ``lm_loss`` does), with ``torch.optim.AdamW`` (its
  default on the CPU: one parameter tensor at a time, like the course's; the multi-tensor
  ``foreach`` route is the default on CUDA only) and ``torch.nn.utils.clip_grad_norm_``,
  as it ships: its matmuls on torch's BLAS.

When the trainer's pick is oneDNN, two more rows separate the library from the model:
the course model on torch's BLAS, and GPT-2 with its matmuls on the same oneDNN linears
(``_peers.onednn_gpt2``). The goal compares the first two rows; the note under the
table gives both same-library ratios. Before the steps, the benchmark measures each
library's float32 GFLOP/s on one core at the MLP's shape (768 x 128 times 128 x 704).
Both take the same batches of the same character data (the first MB of the course
corpus, its 64 most frequent characters plus one id for all others), with the same
AdamW settings as nanoGPT's shakespeare-char config. The two models alternate in rounds
so that a change in machine load hits both; the figure is the median step time over all
timed steps, at 1 thread and at 2 (``torch.set_num_threads``). Parameter counts differ
a little (GPT-2 has biases and position embeddings; SwiGLU is sized to GPT-2's MLP).
With ``--compile``, both models also run a second time with their forward passes under
``torch.compile`` (inductor's fused C++ kernels; needs a C compiler, and the first step
of each compiles for a few tens of seconds, outside the timing), alternating with the
eager ones, so that the table shows what fusing the element-wise work buys each side
(the course model on the trainer's matmul pick, whose oneDNN matmuls inductor keeps as
calls; GPT-2 as shipped).

Run: ``make bench`` or ``.venv/bin/python bench/pretraining_step.py [--steps 20 --rounds 5] [--compile]``.
Output: a table, then one JSON line; the same JSON, with machine info, goes to
bench/results/pretraining_step.json (read by the chapter 3 book page).
Goal: the course model at least 1.2x the HF step rate (eager against eager).
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from contextlib import ExitStack

import torch
from transformers.utils import logging as hf_logging

from _common import print_table, report, timed
from tinygpt.runtime import machine_info
from _peers import gpt2_peer, onednn_gpt2
from tinygpt.corpus import course_corpus
from tinygpt.pretraining import GPT, GPTConfig
from tinygpt.kernels.cpu_matmul import (linear, onednn_available, onednn_linears,
                                            resolve_backend)
from tinygpt.pretraining.optim import AdamW, param_groups
from tinygpt.pretraining.step import train_step
from tinygpt.runtime import has_c_compiler

# nanoGPT README (CPU): --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
# --dropout=0.0; config/train_shakespeare_char.py: lr 1e-3, beta2 0.99, weight decay 0.1, clip 1.
LAYERS, HEADS, WIDTH, CONTEXT, BATCH, VOCAB = 4, 4, 128, 64, 12, 65
LR, BETAS, WEIGHT_DECAY, CLIP = 1e-3, (0.9, 0.99), 0.1, 1.0


def char_tokens(n_bytes: int = 1_000_000) -> torch.Tensor:
    """The corpus as character ids: the 64 most frequent characters, and 64 for the rest."""
    text = course_corpus(n_bytes)
    ids = {c: i for i, (c, _) in enumerate(Counter(text).most_common(VOCAB - 1))}
    return torch.tensor([ids.get(c, VOCAB - 1) for c in text])


def course_step(compile_: bool = False):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, block_size=CONTEXT, n_layer=LAYERS, n_head=HEADS,
                          n_embd=WIDTH))
    opt = AdamW(param_groups(model, WEIGHT_DECAY), lr=LR, betas=BETAS)
    forward = torch.compile(model) if compile_ else model
    return model, lambda batch: train_step(forward, opt, batch, LR, CLIP)[0]


def hf_step(compile_: bool = False):
    return gpt2_peer(VOCAB, CONTEXT, WIDTH, LAYERS, HEADS, LR, BETAS, WEIGHT_DECAY, CLIP,
                     compile_=compile_)


def gemm_rates(m: int = 768, k: int = 128, n: int = 704, reps: int = 50) -> dict[str, float]:
    """Float32 GFLOP/s of x W^T on one core: torch's BLAS, and oneDNN if this torch has it."""
    torch.set_num_threads(1)
    x, w = torch.randn(m, k), torch.randn(n, k)
    routes = {"blas": lambda: torch.nn.functional.linear(x, w)}
    if onednn_available():
        routes["onednn"] = lambda: linear(x, w)
    rates = {}
    for name, fn in routes.items():
        timed(fn, 5)  # warm-up
        rates[name] = round(2 * m * k * n / min(timed(fn, reps)[1]) / 1e9, 1)
    return rates


def measure(steps: dict, data: torch.Tensor, n_steps: int, rounds: int) -> dict[str, list[float]]:
    """Per-step seconds for each contender, alternating rounds of ``n_steps`` steps."""
    gen = torch.Generator().manual_seed(0)
    def batch():
        starts = torch.randint(0, len(data) - CONTEXT, (BATCH,), generator=gen)
        return torch.stack([data[s:s + CONTEXT] for s in starts.tolist()])
    for step in steps.values():  # warm-up: allocations, first-call paths
        for _ in range(3):
            step(batch())
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            for _ in range(n_steps):
                b = batch()
                start = time.perf_counter()
                step(b)
                times[name].append(time.perf_counter() - start)
    return times


LABELS = {"course": "course GPT", "course_blas": "course GPT, torch's BLAS",
          "hf_gpt2": "HF GPT2LMHeadModel", "hf_gpt2_onednn": "HF GPT-2, oneDNN matmuls",
          "course_compiled": "course GPT, compiled", "hf_gpt2_compiled": "HF GPT-2, compiled"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per thread count")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--compile", action="store_true",
                        help="also time both models with torch.compile (needs a C compiler)")
    args = parser.parse_args()
    if args.compile and not has_c_compiler():
        parser.error("--compile needs a C compiler (cc, gcc or clang) on PATH for torch.compile's CPU kernels")
    hf_logging.set_verbosity_error()  # its notes on the unused GPT-2 token ids are not ours

    data = char_tokens()
    matmul = resolve_backend("auto")  # what the course's trainer runs on here
    rates = gemm_rates()
    with ExitStack() as routed:
        ours, ours_step = course_step()
        hf, hf_step_fn = hf_step()
        routed.enter_context(onednn_linears(ours, matmul))
        contenders = {"course": ours_step, "hf_gpt2": hf_step_fn}
        if matmul == "onednn":
            contenders["course_blas"] = course_step()[1]
            hf_onednn, contenders["hf_gpt2_onednn"] = hf_step()
            routed.enter_context(onednn_gpt2(hf_onednn))
        if args.compile:  # the course model as the trainer compiles it: on its matmul pick
            compiled, contenders["course_compiled"] = course_step(compile_=True)
            routed.enter_context(onednn_linears(compiled, matmul))
            contenders["hf_gpt2_compiled"] = hf_step(compile_=True)[1]
        results, rows = run_all(contenders, data, args)
    params = {"course": sum(p.numel() for p in ours.parameters()),
              "hf_gpt2": sum(p.numel() for p in hf.parameters())}
    print(f"nanoGPT CPU config: {LAYERS} layers, {HEADS} heads, width {WIDTH}, context {CONTEXT}, "
          f"batch {BATCH}, vocab {VOCAB}; parameters: course {params['course']:,}, "
          f"HF GPT-2 {params['hf_gpt2']:,}; {args.rounds} x {args.steps} timed steps each")
    print(f"float32 GFLOP/s on one core, 768x128 @ 128x704: " + ", ".join(
        f"{k} {v}" for k, v in rates.items()) + f"; the course trainer's pick here: {matmul}\n")
    print_table(["model", "ms/step", "tokens/s", "HF's time / this"], rows)
    for threads, r in results.items():
        same = "; ".join(f"on {lib}: {x:.2f}x" for lib, x in r["same_library_speedup"].items())
        print(f"{threads} thread(s): course {r['speedup_over_hf']:.2f}x HF as shipped"
              + (f"; same matmul library {same}" if same else ""))
    met = all(r["speedup_over_hf"] >= 1.2 for r in results.values())
    print(f"\ngoal: course at least 1.2x HF's step rate -> {'met' if met else 'NOT met'}")
    summary = {"bench": "pretraining_step", "config": {
        "n_layer": LAYERS, "n_head": HEADS, "n_embd": WIDTH, "block_size": CONTEXT,
        "batch_size": BATCH, "vocab_size": VOCAB}, "params": params, "cpu_matmul": matmul,
        "gemm_gflops_1_core": rates, "threads": results}
    report("pretraining_step", summary, {
        "steps_per_round": args.steps, "rounds": args.rounds, "compiled_rows": args.compile,
        "machine": machine_info(["tinygpt", "torch", "transformers"])})


def run_all(contenders: dict, data: torch.Tensor, args) -> tuple[dict, list]:
    """Time every contender at each thread count; the JSON results and the table's rows."""
    results, rows = {}, []
    tokens = BATCH * CONTEXT
    for threads in args.threads:
        torch.set_num_threads(threads)
        times = measure(contenders, data, args.steps, args.rounds)
        ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
        r = {"ms_per_step": {k: round(v, 2) for k, v in ms.items()},
             "tokens_per_s": {k: round(1000 * tokens / v) for k, v in ms.items()},
             "speedup_over_hf": round(ms["hf_gpt2"] / ms["course"], 2), "same_library_speedup": {}}
        if "course_blas" in ms:
            r["same_library_speedup"] = {"blas": round(ms["hf_gpt2"] / ms["course_blas"], 2),
                                         "onednn": round(ms["hf_gpt2_onednn"] / ms["course"], 2)}
        if "course_compiled" in ms:
            r["compiled_speedup_over_hf_compiled"] = round(
                ms["hf_gpt2_compiled"] / ms["course_compiled"], 2)
        results[str(threads)] = r
        for name in ms:
            peer = "hf_gpt2_compiled" if name.endswith("compiled") else "hf_gpt2"
            rows.append([f"{LABELS[name]}, {threads} thread{'s' if threads > 1 else ''}",
                         f"{ms[name]:.1f}", f"{1000 * tokens / ms[name]:,.0f}",
                         f"{ms[peer] / ms[name]:.2f}x"])
    return results, rows


if __name__ == "__main__":
    main()
