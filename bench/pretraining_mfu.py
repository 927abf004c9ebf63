"""Benchmark: model FLOPs utilisation of a GPT-2-small-sized course model on one GPU.

What it measures: wall time of whole training steps (``train_step``: bf16 autocast,
fused SDPA attention, the course's AdamW, gradient clipping), timed with
``torch.cuda.synchronize`` around ``--steps`` steps after ``--warmup`` untimed ones, for

* the course model ``tinygpt.pretraining.GPT`` at the 124M-parameter shape of GPT-2
  small (12 layers, 12 heads, width 768, context 1024, vocabulary 50,304 as nanoGPT pads
  it), and
* Hugging Face ``GPT2LMHeadModel`` at the same shape with ``torch.optim.AdamW`` (its CUDA
  default, the multi-tensor route), under the same autocast,

and reports tokens/s and model FLOPs utilisation: achieved FLOPs over the chip's peak,
counting ``6 N + 12 L T d`` FLOPs per token (PaLM, Chowdhery et al. 2022, appendix B: the
matrix multiplies of forward and backward, plus attention's scores and weighted sums;
``N`` all parameters, the tied embedding once). Peak: dense bf16 of the chip, 989 TFLOP/s
for H100 and H200 SXM (NVIDIA's data sheets), or ``--peak-tflops``. ``--compile`` runs
both models through ``torch.compile`` first.

Run on a GPU machine: ``.venv/bin/python bench/pretraining_mfu.py`` (needs
requirements-bench.txt). ``--size tiny --device cpu`` is a smoke run that checks the
script end to end on a laptop (its MFU means nothing). Output: a table, then one JSON
line; the same JSON, with machine info, goes to bench/results/pretraining_mfu.json
(``--size 124m`` only). Goal: at least 45 % MFU on an H100.
"""
from __future__ import annotations

import argparse
import time

import torch
from transformers.utils import logging as hf_logging

from _common import print_table, report
from tinygpt.runtime import machine_info
from _peers import gpt2_peer
from tinygpt.pretraining import GPT, GPTConfig
from tinygpt.pretraining.optim import AdamW, param_groups
from tinygpt.pretraining.step import train_step

SIZES = {"124m": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50304),
         "tiny": dict(n_layer=2, n_head=2, n_embd=64, block_size=64, vocab_size=512)}
PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}
LR, BETAS, WEIGHT_DECAY, CLIP = 6e-4, (0.9, 0.95), 0.1, 1.0


def peak_tflops(device: str, override: float | None) -> float | None:
    if override is not None:
        return override
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def course(shape: dict, device: str, amp: torch.dtype | None, compile_: bool):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**shape)).to(device)
    opt = AdamW(param_groups(model, WEIGHT_DECAY), lr=LR, betas=BETAS)
    forward = torch.compile(model) if compile_ else model
    return model, lambda batch: train_step(forward, opt, batch, LR, CLIP, amp_dtype=amp)[0]


def hf(shape: dict, device: str, amp: torch.dtype | None, compile_: bool):
    return gpt2_peer(shape["vocab_size"], shape["block_size"], shape["n_embd"], shape["n_layer"],
                     shape["n_head"], LR, BETAS, WEIGHT_DECAY, CLIP, device, amp, compile_)


def seconds_per_step(step, batches: list[torch.Tensor], warmup: int, device: str) -> float:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for b in batches[:warmup]:
        step(b)
    sync()
    start = time.perf_counter()
    for b in batches[warmup:]:
        step(b)
    sync()
    return (time.perf_counter() - start) / (len(batches) - warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="124m")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16, help="sequences per step")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the chip's dense bf16 peak")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    torch.backends.cuda.matmul.allow_tf32 = True

    shape = SIZES[args.size]
    amp = torch.bfloat16 if args.device == "cuda" else None
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, shape["vocab_size"], (args.batch, shape["block_size"]),
                             generator=gen).to(args.device) for _ in range(args.warmup + args.steps)]
    tokens = args.batch * shape["block_size"]
    peak = peak_tflops(args.device, args.peak_tflops)
    results, rows = {}, []
    for name, build in (("course", course), ("hf_gpt2", hf)):
        model, step = build(shape, args.device, amp, args.compile)
        n = sum(p.numel() for p in model.parameters())
        flops_per_token = 6 * n + 12 * shape["n_layer"] * shape["block_size"] * shape["n_embd"]
        s = seconds_per_step(step, batches, args.warmup, args.device)
        achieved = flops_per_token * tokens / s / 1e12
        results[name] = {"params": n, "ms_per_step": round(1000 * s, 2),
                         "tokens_per_s": round(tokens / s), "tflops": round(achieved, 1),
                         "mfu": None if peak is None else round(achieved / peak, 4)}
        rows.append([name, f"{n / 1e6:.1f}M", f"{1000 * s:.1f}", f"{tokens / s:,.0f}",
                     f"{achieved:.1f}", "-" if peak is None else f"{100 * achieved / peak:.1f}%"])
        del model, step
        if args.device == "cuda":
            torch.cuda.empty_cache()
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"{args.size}: {shape}; batch {args.batch} x {shape['block_size']} tokens; {device_name}; "
          f"peak {peak} TFLOP/s; compile {args.compile}\n")
    print_table(["model", "params", "ms/step", "tokens/s", "TFLOP/s", "MFU"], rows)
    summary = {"bench": "pretraining_mfu", "size": args.size, "shape": shape, "batch": args.batch,
               "device": device_name, "peak_tflops": peak, "compile": args.compile,
               "results": results}
    details = {"steps": args.steps, "warmup": args.warmup,
               "machine": machine_info(["tinygpt", "torch", "transformers"])}
    if args.size == "124m":
        report("pretraining_mfu", summary, details)
    else:
        print(summary)


if __name__ == "__main__":
    main()
