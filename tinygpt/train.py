"""The pre-training entry point (chapter 3): train the course GPT on the course corpus.

    python -m tinygpt.train                             # preset "cpu": minutes on 2 cores
    python -m tinygpt.train --preset tiny --max-steps 50 --device auto
    torchrun --standalone --nproc_per_node=8 -m tinygpt.train --preset gpu

A driver, after nanoGPT's ``train.py`` with argparse flags in place of its configurator:
it trains chapter 2's tokenizer on the corpus, writes the tokens to memory-mapped
shards, and runs chapter 3's training step with the warm-up and cosine schedule,
periodic evaluation on the held-out split and checkpoints (resumable with
``--resume``). On the CPU its linear layers run on the matmul library that
``--cpu-matmul`` names (default "auto": oneDNN on AMD CPUs, where it is about twice as
fast as MKL; see ``tinygpt.pretraining.cpu_matmul``). Under torchrun each process
takes its rows of the global batch and the gradients are averaged (gloo on the CPU,
NCCL on GPUs). Expensive artefacts (tokenizer and shards; runs the book shows) are
cached under ``tinygpt.runtime.CACHE_DIR`` with keys that change when the corpus, the
configs or the code change. Drivers may import any step; no step imports a driver.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from tinygpt.corpus import course_corpus
from tinygpt.pretraining.checkpoint import load_model, resume, save_checkpoint
from tinygpt.pretraining.config import PRESETS, GPTConfig, TrainConfig
from tinygpt.pretraining.cpu_matmul import onednn_linears, resolve_backend
from tinygpt.pretraining.data import read_shard, sample_batch, write_shard
from tinygpt.pretraining.distributed import allreduce_gradients, init_distributed
from tinygpt.pretraining.model import GPT, lm_loss
from tinygpt.pretraining.optim import AdamW, lr_at, param_groups
from tinygpt.pretraining.step import train_step
from tinygpt.runtime import CACHE_DIR, REPO_ROOT, has_c_compiler
from tinygpt.tokenizer import Tokenizer

EOT = "<|endoftext|>"
SAMPLE_PROMPT = "The bank by the river"
SHARD_TOKENS = 1 << 21  # tokens per training shard (4 MiB as uint16)
SPLIT_CHUNK = 1 << 15   # the validation split takes whole chunks of (at most) this many tokens


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else repr(part).encode())
    return h.hexdigest()[:16]


def _code_digest(*paths: str) -> str:
    """A digest of the package code (files, or folders of them) an artefact was made by."""
    package = REPO_ROOT / "tinygpt"
    files = sorted(f for p in paths for f in ([package / p] if p.endswith(".py")
                                               else (package / p).glob("*.py")))
    return _digest(*(f.read_bytes() for f in files))


@dataclass
class Run:
    """What ``train`` returns: the history (plain JSON data), the trained model, the data."""

    history: dict
    model: GPT
    data: "Data"


@dataclass
class Data:
    """A tokenizer and the token shards of the corpus, split into training and validation."""

    tokenizer: Tokenizer
    train: list[np.memmap]
    val: list[np.memmap]
    folder: Path


def prepare_data(vocab_size: int, corpus_bytes: int | None = None, val_fraction: float = 0.05,
                 progress: bool = False) -> Data:
    """Train the tokenizer and shard the corpus, or read both from the cache."""
    text = course_corpus(corpus_bytes)
    key = _digest(hashlib.sha256(text.encode()).digest(), vocab_size, val_fraction,
                  _code_digest("tokenizer", "pretraining/data.py", "train.py"))
    folder = CACHE_DIR / f"ch03-data-{key}"
    if not (folder / "done").exists():
        folder.mkdir(parents=True, exist_ok=True)
        if progress:
            print(f"training a {vocab_size}-token tokenizer on {len(text.encode()) / 1e6:.1f} MB "
                  "and sharding the corpus ...", file=sys.stderr)
        tok = Tokenizer.train(text, vocab_size, special_tokens=[EOT], progress=progress)
        tok.save(folder / "tokenizer.json")
        ids = np.array(tok.to_tiktoken().encode_ordinary(text), dtype=np.int64)
        # Every period-th chunk is held out: the corpus's mix drifts along its length.
        # (Chunks shrink for a small corpus, so that validation gets at least 4 of them.)
        period = round(1 / val_fraction)
        size = min(SPLIT_CHUNK, len(ids) // (4 * period))
        chunks = [ids[i:i + size] for i in range(0, len(ids), size)]
        train_ids = np.concatenate([c for i, c in enumerate(chunks) if i % period != period - 1])
        val_ids = np.concatenate([c for i, c in enumerate(chunks) if i % period == period - 1])
        for i, start in enumerate(range(0, len(train_ids), SHARD_TOKENS)):
            write_shard(folder / f"train-{i:03d}.bin", train_ids[start:start + SHARD_TOKENS])
        write_shard(folder / "val-000.bin", val_ids)
        (folder / "done").write_text("")
    return Data(Tokenizer.load(folder / "tokenizer.json"),
                [read_shard(p) for p in sorted(folder.glob("train-*.bin"))],
                [read_shard(p) for p in sorted(folder.glob("val-*.bin"))], folder)


def unigram_loss(data: Data, vocab_size: int) -> float:
    """Cross-entropy (nats) of the validation tokens under the training split's token
    frequencies (add-one smoothed): the loss of a model that ignores the context."""
    counts = sum(np.bincount(s, minlength=vocab_size) for s in data.train).astype(np.float64) + 1
    logp = np.log(counts / counts.sum())
    val = np.concatenate([np.asarray(s) for s in data.val])
    return float(-logp[val].mean())


@torch.no_grad()
def estimate_loss(model: GPT, shards: list, batches: int, batch_size: int, device: str,
                  amp_dtype: torch.dtype | None = None, seed: int = 0) -> float:
    """Mean loss over ``batches`` fixed random batches of ``shards`` (the same every call)."""
    was_training = model.training
    model.eval()
    losses = []
    for i in range(batches):
        tokens = sample_batch(shards, batch_size, model.config.block_size, seed, i).to(device)
        with torch.autocast(tokens.device.type, dtype=amp_dtype or torch.bfloat16,
                            enabled=amp_dtype is not None):
            losses.append(lm_loss(model(tokens), tokens))
    model.train(was_training)
    return torch.stack(losses).mean().item()


@torch.no_grad()
def sample_text(model: GPT, tokenizer: Tokenizer, prompt: str, max_new_tokens: int = 60,
                temperature: float = 0.8, seed: int = 0) -> str:
    """Continue ``prompt`` by sampling (no KV cache: chapters 10-12 make this fast)."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    ids = torch.tensor([tokenizer.encode(prompt)], device=device)
    for _ in range(max_new_tokens):
        logits = model(ids[:, -model.config.block_size:])[:, -1].float()
        if temperature == 0:
            nxt = logits.argmax(-1, keepdim=True)
        else:
            nxt = torch.multinomial((logits / temperature).softmax(-1), 1, generator=gen)
        ids = torch.cat([ids, nxt], dim=1)
    return tokenizer.decode(ids[0, -max_new_tokens:].tolist())


def train(model_cfg: GPTConfig, train_cfg: TrainConfig, device: str = "cpu",
          out_dir: Path | None = None, resume_run: bool = False, progress: bool = False) -> Run:
    """Train from scratch (or resume ``out_dir``); return the history, the model and the data.

    The history holds every step's training loss, the evaluations (training and
    validation loss every ``eval_interval`` steps and at the end), the unigram baseline,
    tokens per step, parameters and seconds. With ``out_dir`` it checkpoints there at
    every evaluation, and writes ``history.json`` beside the checkpoint.
    """
    place = init_distributed(device)
    if train_cfg.compile and place.device == "cpu" and not has_c_compiler():
        raise RuntimeError("compile=True on the CPU needs a C compiler (cc, gcc or clang) on "
                           "PATH: torch.compile builds its CPU kernels with it")
    matmul = resolve_backend(train_cfg.cpu_matmul) if place.device == "cpu" else "blas"
    data = _prepare_once(model_cfg, train_cfg, place, progress)
    torch.manual_seed(train_cfg.seed)
    model = GPT(model_cfg).to(place.device)
    optimizer = AdamW(param_groups(model, train_cfg.weight_decay), lr=train_cfg.max_lr,
                      betas=(train_cfg.beta1, train_cfg.beta2), eps=train_cfg.eps)
    amp = torch.bfloat16 if train_cfg.bf16 and place.device.startswith("cuda") else None
    history = {"model": model_cfg.to_dict(), "train": train_cfg.to_dict(),
               "params": sum(p.numel() for p in model.parameters()),
               "tokens_per_step": train_cfg.batch_size * model_cfg.block_size * place.world_size,
               "world_size": place.world_size, "device": place.device, "cpu_matmul": matmul,
               "unigram_val": unigram_loss(data, model_cfg.vocab_size),
               "train_loss": [], "evals": [], "seconds": 0.0}
    start = 0
    if resume_run and out_dir is not None and (Path(out_dir) / "config.json").exists():
        start = resume(out_dir, model, optimizer)
        history = json.loads((Path(out_dir) / "history.json").read_text())
        history["train_loss"] = history["train_loss"][:start]
        history["evals"] = [e for e in history["evals"] if e["step"] <= start]
    reduce = allreduce_gradients if place.world_size > 1 else None
    with onednn_linears(model, matmul):  # the trainer's CPU matmul library, for the run
        # Compiled, the forward's element-wise chains (RoPE, RMSNorm, SwiGLU) become fused
        # loops; the first step compiles. Checkpoints and evaluation use the model itself.
        forward = torch.compile(model) if train_cfg.compile else model
        losses: list[torch.Tensor] = []
        began = time.perf_counter()
        bar = tqdm(range(start, train_cfg.max_steps), desc="pre-training", initial=start,
                   total=train_cfg.max_steps, disable=not (progress and place.is_main))
        for step in bar:
            tokens = sample_batch(data.train, train_cfg.batch_size, model_cfg.block_size,
                                  train_cfg.seed, step, place.rank, place.world_size)
            tokens = tokens.to(place.device)
            lr = lr_at(step, train_cfg.max_lr, train_cfg.min_lr, train_cfg.warmup_steps,
                       train_cfg.max_steps)
            loss, _ = train_step(forward, optimizer, tokens, lr, train_cfg.grad_clip, amp, reduce)
            losses.append(loss)
            done = step + 1
            if done % train_cfg.eval_interval == 0 or done == train_cfg.max_steps:
                history["train_loss"] += torch.stack(losses).tolist()
                losses.clear()
                history["seconds"] += time.perf_counter() - began
                if place.is_main:
                    evals = {split: estimate_loss(model, shards, train_cfg.eval_batches,
                                                  train_cfg.batch_size, place.device, amp)
                             for split, shards in (("train", data.train), ("val", data.val))}
                    history["evals"].append({"step": done, **evals})
                    bar.set_postfix(train=f"{evals['train']:.3f}", val=f"{evals['val']:.3f}")
                    if out_dir is not None:
                        save_checkpoint(out_dir, model, optimizer, done, train_cfg)
                        (Path(out_dir) / "history.json").write_text(json.dumps(history) + "\n")
                began = time.perf_counter()
    if place.world_size > 1:
        dist.destroy_process_group()
    return Run(history, model, data)


def _prepare_once(model_cfg, train_cfg, place, progress) -> Data:
    """Rank 0 builds the cached data; the others wait for it, then read it."""
    if place.world_size > 1 and not place.is_main:
        dist.barrier()
    data = prepare_data(model_cfg.vocab_size, train_cfg.corpus_bytes, train_cfg.val_fraction,
                        progress and place.is_main)
    if place.world_size > 1 and place.is_main:
        dist.barrier()
    return data


def cached_run(model_cfg: GPTConfig, train_cfg: TrainConfig) -> Run:
    """``train`` on the CPU, or its result from the cache: the book's runs build on demand."""
    key = _digest(model_cfg, train_cfg, _code_digest("pretraining", "tokenizer", "train.py"))
    folder = CACHE_DIR / f"ch03-run-{key}"
    if not (folder / "history.json").exists():
        return train(model_cfg, train_cfg, "cpu", folder)
    data = prepare_data(model_cfg.vocab_size, train_cfg.corpus_bytes, train_cfg.val_fraction)
    return Run(json.loads((folder / "history.json").read_text()), load_model(folder), data)


def _flags(parser: argparse.ArgumentParser) -> None:
    """One flag per field of GPTConfig and TrainConfig; unset flags keep the preset's value."""
    for cls in (GPTConfig, TrainConfig):
        group = parser.add_argument_group(cls.__name__)
        for f in dataclasses.fields(cls):
            kind = {"bool": lambda s: s.lower() in ("1", "true", "yes"), "float": float,
                    "str": str}.get(str(f.type).split(" |")[0], int)
            cpu = getattr(PRESETS["cpu"][0 if cls is GPTConfig else 1], f.name)
            group.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None,
                               help=f"default: the preset's (preset cpu: {cpu})")


def main(argv: list[str] | None = None) -> Run:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--out", type=Path, default=None,
                        help="checkpoint folder (default: .cache/runs/<preset>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--report", type=Path, default=None,
                        help="also write the history (losses, baseline, timing) to this JSON file")
    _flags(parser)
    args = parser.parse_args(argv)
    model_cfg, train_cfg = PRESETS[args.preset]
    given = {k: v for k, v in vars(args).items() if v is not None}
    try:  # a bad shape or library name is a usage error, not a traceback
        model_cfg = dataclasses.replace(model_cfg, **{f.name: given[f.name] for f in dataclasses
                                                      .fields(GPTConfig) if f.name in given})
        train_cfg = dataclasses.replace(train_cfg, **{f.name: given[f.name] for f in dataclasses
                                                      .fields(TrainConfig) if f.name in given})
        resolve_backend(train_cfg.cpu_matmul)
    except ValueError as err:
        parser.error(str(err))
    out = args.out or CACHE_DIR / "runs" / args.preset
    run = train(model_cfg, train_cfg, args.device, out, args.resume, progress=not args.quiet)
    h = run.history
    if h["evals"]:  # the main process (the only one that evaluates)
        final = h["evals"][-1]
        print(f"{h['params']:,} parameters, {h['tokens_per_step'] * len(h['train_loss']):,} "
              f"tokens in {h['seconds']:.0f} s; final loss: train {final['train']:.3f}, "
              f"val {final['val']:.3f} (unigram baseline {h['unigram_val']:.3f}, "
              f"ln V {math.log(model_cfg.vocab_size):.3f}); checkpoint in {out}")
        sample = sample_text(run.model, run.data.tokenizer, SAMPLE_PROMPT, seed=1)
        print("sample:", repr(SAMPLE_PROMPT + sample))
        if args.report:
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_text(json.dumps({**h, "sample": [SAMPLE_PROMPT, sample]}) + "\n")
    return run


if __name__ == "__main__":
    main()
