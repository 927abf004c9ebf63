"""Chapter 3's training loop, the sampler that shows what a model learned, and cached runs.

Infrastructure that wires the chapter's graded steps together (written here, not an
exercise): ``train`` runs ``step.train_step`` with the warm-up and cosine schedule of
``optim``, evaluates on the held-out split, checkpoints (resumable) and, under torchrun,
averages gradients across processes (gloo on the CPU, NCCL on GPUs). On the CPU its
linear layers run on the library that ``TrainConfig.cpu_matmul`` names
(``tinygpt.kernels.cpu_matmul``). ``cached_run`` returns a run from the cache, training
it on the first call: the book's runs build on demand. The command line is the driver
``tinygpt.train``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from tinygpt.kernels.cpu_matmul import onednn_linears, resolve_backend
from tinygpt.pretraining.checkpoint import load_model, read_checkpoint, resume, save_checkpoint
from tinygpt.pretraining.config import GPTConfig, TrainConfig
from tinygpt.pretraining.data import sample_batch
from tinygpt.pretraining.distributed import allreduce_gradients, init_distributed
from tinygpt.pretraining.model import GPT, lm_loss
from tinygpt.pretraining.optim import AdamW, lr_at, param_groups
from tinygpt.pretraining.prepare import Data, prepare_data, unigram_loss
from tinygpt.pretraining.step import train_step
from tinygpt.runtime import CACHE_DIR, cache_key, has_c_compiler
from tinygpt.tokenizer import Tokenizer


@dataclass
class Run:
    """What ``train`` returns: the history (plain JSON data), the trained model, the data."""

    history: dict
    model: GPT
    data: Data


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
                        data.tokenizer.save(Path(out_dir) / "tokenizer.json")
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


def cached_run_folder(model_cfg: GPTConfig, train_cfg: TrainConfig) -> Path:
    """Where :func:`cached_run` keeps this run's checkpoint (keyed by the configs and the code)."""
    key = cache_key(model_cfg, train_cfg, code=("pretraining", "tokenizer", "kernels"))
    return CACHE_DIR / f"ch03-run-{key}"


def cached_run(model_cfg: GPTConfig, train_cfg: TrainConfig) -> Run:
    """``train`` on the CPU, or its result from the cache: the book's runs build on demand."""
    folder = cached_run_folder(model_cfg, train_cfg)
    if not (folder / "history.json").exists():
        return train(model_cfg, train_cfg, "cpu", folder)
    data = prepare_data(model_cfg.vocab_size, train_cfg.corpus_bytes, train_cfg.val_fraction)
    return Run(json.loads((folder / "history.json").read_text()), load_model(folder), data)


def checkpoint_data(folder: str | Path) -> Data:
    """The tokenizer and shards that a checkpoint's training config names (rebuilt or cached)."""
    _, meta = read_checkpoint(folder, optimizer=False)
    train_cfg = meta.get("train") or {}
    return prepare_data(meta["model"]["vocab_size"], train_cfg.get("corpus_bytes"),
                        train_cfg.get("val_fraction", 0.05))


def run_tokenizer(folder: str | Path) -> Tokenizer:
    """The tokenizer of a checkpoint folder: its ``tokenizer.json``, or for a run saved
    without one, the course tokenizer its training config names (rebuilt or cached)."""
    folder = Path(folder)
    if (folder / "tokenizer.json").exists():
        return Tokenizer.load(folder / "tokenizer.json")
    return checkpoint_data(folder).tokenizer
