"""Chapter 3's checks for notebook 3 (03_training): AdamW, the schedule, clipping, the step, shards, batches, checkpoints.

Part of ``tinygpt.checks.ch03`` (its docstring says how the checks work).
"""
from __future__ import annotations

import copy
import json
import math
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tinygpt.checks.common import raises_value_error
from tinygpt.checks.ch03.shared import close, randn
from tinygpt.pretraining import data as ref_data
from tinygpt.pretraining import model as ref_model
from tinygpt.pretraining.config import GPTConfig
from tinygpt.pretraining.optim import AdamW, param_groups
from tinygpt.pretraining.step import train_step as ref_train_step


def check_adamw_update(adamw_update, seed: int) -> None:
    """Step for step equal to torch.optim.AdamW, over random shapes and hyperparameters."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    lr, wd = rng.choice([1e-3, 3e-2, 0.3]), rng.choice([0.0, 0.01, 0.1])
    betas, eps = (rng.choice([0.8, 0.9]), rng.choice([0.95, 0.999])), rng.choice([1e-8, 1e-6])
    params = [randn(gen, *shape) for shape in ([3], [2, 4], [1, 2, 3])]
    torch_params = [p.clone().requires_grad_() for p in params]
    opt = torch.optim.AdamW(torch_params, lr=lr, betas=betas, eps=eps, weight_decay=wd,
                            foreach=False)
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    for step in range(1, 7):
        for p, tp, (m, v) in zip(params, torch_params, moments):
            g = randn(gen, *p.shape, scale=rng.choice([1e-3, 1.0, 10.0]))
            tp.grad = g.clone()
            adamw_update(p, g, m, v, step, lr, betas[0], betas[1], eps, wd)
        opt.step()
        for i, (p, tp, (m, v)) in enumerate(zip(params, torch_params, moments)):
            what = f"step {step}, tensor {i} (lr={lr}, betas={betas}, eps={eps}, weight_decay={wd})"
            close(f"parameter at {what} against torch.optim.AdamW", p, tp.detach(), atol=1e-6,
                   rtol=1e-5)
            close(f"exp_avg at {what}", m, opt.state[tp]["exp_avg"], atol=1e-7, rtol=1e-5)
            close(f"exp_avg_sq at {what}", v, opt.state[tp]["exp_avg_sq"], atol=1e-9, rtol=1e-5)


def _lr_oracle(step, max_lr, min_lr, warmup, total):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    return min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))) / 2


def check_lr_at(lr_at, seed: int) -> None:
    """The formula at every step of a random schedule, and a little past its end."""
    rng = random.Random(seed)
    max_lr, warmup = rng.choice([1e-3, 6e-4, 1.0]), rng.randrange(1, 30)
    min_lr, total = max_lr * rng.choice([0.0, 0.1]), warmup + rng.randrange(1, 80)
    for step in range(total + 3):
        got, want = lr_at(step, max_lr, min_lr, warmup, total), _lr_oracle(
            step, max_lr, min_lr, warmup, total)
        if not isinstance(got, (int, float)) or abs(got - want) > 1e-12 * max(1.0, abs(want)):
            raise AssertionError(f"lr_at({step}, max_lr={max_lr}, min_lr={min_lr}, "
                                 f"warmup_steps={warmup}, total_steps={total}) = {got!r}, "
                                 f"expected {want!r}")


def check_clip_grad_norm(clip_grad_norm, seed: int) -> None:
    """Equal to torch.nn.utils.clip_grad_norm_: returned norm and clipped grads; None grads skipped."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for trial in range(5):
        params = [torch.zeros(*shape, requires_grad=True) for shape in
                  rng.sample([(3,), (2, 2), (5, 1), (1,), (4,)], rng.randrange(1, 5))]
        for p in params:
            if rng.random() < 0.8:
                p.grad = randn(gen, *p.shape, scale=rng.choice([0.01, 1.0, 100.0]))
        twins = [torch.zeros_like(p, requires_grad=True) for p in params]
        for p, q in zip(params, twins):
            q.grad = None if p.grad is None else p.grad.clone()
        max_norm = rng.choice([0.5, 1.0, 1e3])
        expected = torch.nn.utils.clip_grad_norm_(twins, max_norm)
        given = (p for p in params) if trial % 2 else params  # a generator, as model.parameters()
        got = clip_grad_norm(given, max_norm)
        close(f"clip_grad_norm(max_norm={max_norm}) returned norm", torch.as_tensor(got).float(),
               expected, rtol=1e-5)
        for i, (p, q) in enumerate(zip(params, twins)):
            if (p.grad is None) != (q.grad is None):
                raise AssertionError(f"parameter {i}: a missing gradient must stay missing")
            if p.grad is not None:
                close(f"gradient {i} after clipping to {max_norm}", p.grad, q.grad, rtol=1e-5)


def _zero_embedding_grad(model) -> None:
    """A stand-in for gradient averaging that is easy to detect: it zeroes one gradient."""
    model.tok_emb.weight.grad.zero_()


def _reference_step(model, optimizer, tokens, lr, clip, amp_dtype=None, reduce_grads=None):
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
        logits = model(tokens)
    loss = ref_model.lm_loss(logits, tokens)
    loss.backward()
    if reduce_grads is not None:
        reduce_grads(model)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return loss.detach(), norm


def _tiny_model(rng: random.Random) -> tuple:
    config = GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16, mlp_hidden=32)
    torch.manual_seed(rng.randrange(1000))
    model = ref_model.GPT(config)
    return config, model, AdamW(param_groups(model, 0.1), betas=(0.9, 0.95))


def _same_params(what: str, model, expected, atol: float = 1e-6) -> None:
    for (name, p), q in zip(model.named_parameters(), expected.parameters()):
        close(f"{what}: parameter {name}", p, q, atol=atol, rtol=1e-5)


def check_train_step(train_step, seed: int) -> None:
    """One step equals the reference (fp32, bf16 autocast, with reduce_grads); overfits a batch."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    config, model, optimizer = _tiny_model(rng)
    twin = copy.deepcopy(model)
    twin_opt = AdamW(param_groups(twin, 0.1), betas=(0.9, 0.95))
    tokens = torch.randint(0, config.vocab_size, (4, config.block_size), generator=gen)
    cases = [{}, {"reduce_grads": _zero_embedding_grad}, {"amp_dtype": torch.bfloat16}]
    for kwargs in cases:
        lr, clip = rng.choice([1e-3, 1e-2]), rng.choice([0.05, 1.0])
        loss, norm = train_step(model, optimizer, tokens, lr, clip, **kwargs)
        want_loss, want_norm = _reference_step(twin, twin_opt, tokens, lr, clip, **kwargs)
        what = f"train_step(lr={lr}, grad_clip={clip}, {', '.join(kwargs) or 'float32'})"
        for name, value in (("loss", loss), ("grad_norm", norm)):
            if not isinstance(value, torch.Tensor) or value.requires_grad or value.ndim:
                raise AssertionError(f"{what}: {name} must be a detached 0-dim tensor, got {value!r}")
        atol = 1e-6 if "amp_dtype" not in kwargs else 1e-4
        close(f"{what}: loss", loss, want_loss, atol=atol)
        close(f"{what}: grad_norm (before clipping)", norm, want_norm, atol=atol, rtol=1e-4)
        _same_params(what, model, twin, atol=1e-6 if "amp_dtype" not in kwargs else 1e-4)
        if any(group["lr"] != lr for group in optimizer.param_groups):
            raise AssertionError(f"{what}: set every param group's lr to {lr}")
    first = float(_loss_of(model, tokens))
    for _ in range(12):
        loss, _ = train_step(model, optimizer, tokens, 3e-2, 1.0)
    if float(loss) > 0.5 * first:
        raise AssertionError(f"12 steps on one batch took the loss from {first:.3f} to "
                             f"{float(loss):.3f}; expected it to halve")


def _loss_of(model, tokens) -> torch.Tensor:
    """The reference loss of ``model`` on ``tokens``, without gradients."""
    with torch.no_grad():
        return ref_model.lm_loss(model(tokens), tokens)


def check_read_shard(read_shard, seed: int) -> None:
    """Read-only memmap of the stored dtype with the written values; malformed files raise ValueError."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(3):
            top = rng.choice([2**8, 2**16, 2**20])
            tokens = np.array([rng.randrange(top) for _ in range(rng.randrange(1, 3000))])
            path = ref_data.write_shard(Path(tmp) / f"s{i}.bin", tokens)
            got = read_shard(path)
            want_dtype = np.uint16 if tokens.max() < 2**16 else np.uint32
            if not isinstance(got, np.memmap):
                raise AssertionError(f"read_shard must return an np.memmap, got {type(got).__name__}")
            if got.dtype != want_dtype or got.flags.writeable:
                raise AssertionError(f"a shard of ids below {top} must map read-only as "
                                     f"{np.dtype(want_dtype)}, got {got.dtype} "
                                     f"(writeable={got.flags.writeable})")
            if not np.array_equal(np.asarray(got), tokens):
                raise AssertionError(f"read_shard gave other tokens than were written "
                                     f"(first {np.asarray(got)[:5]}, expected {tokens[:5]})")
            del got
        good = path.read_bytes()
        header = np.frombuffer(good[:32], dtype="<u8").copy()
        broken = {"a wrong magic number": (0, 12345), "a newer version": (1, 99),
                  "3 bytes per token": (2, 3)}
        for what, (field, value) in broken.items():
            bad = header.copy()
            bad[field] = value
            _refused(read_shard, Path(tmp) / "bad.bin", bad.tobytes() + good[32:], what)
        _refused(read_shard, Path(tmp) / "bad.bin", good[:-2], "a truncated shard")
        _refused(read_shard, Path(tmp) / "bad.bin", good + b"\0\0\0\0", "extra bytes")


def _refused(read_shard, path: Path, content: bytes, what: str) -> None:
    path.write_bytes(content)
    raises_value_error(f"read_shard of a file with {what}", lambda: read_shard(path))


def check_sample_batch(sample_batch, seed: int) -> None:
    """Windows inside one shard, uniform over all windows, a function of (seed, step), ranks split it."""
    rng = random.Random(seed)
    block = rng.choice([4, 8])
    lengths = [block + rng.randrange(0, 6), rng.randrange(60, 100), block - 1]
    values = np.random.default_rng(seed).permutation(sum(lengths)) + rng.choice([0, 70_000])
    dtype = np.uint16 if values.max() < 2**16 else np.uint32
    shards, where, start = [], {}, 0
    for s, n in enumerate(lengths):
        shards.append(values[start:start + n].astype(dtype))
        where.update({int(v): (s, i) for i, v in enumerate(shards[-1])})
        start += n
    batch_seed, step = rng.randrange(1000), rng.randrange(1000)
    batch = sample_batch(shards, 2000, block, batch_seed, step)
    if not isinstance(batch, torch.Tensor) or batch.dtype != torch.int64 or batch.shape != (2000, block):
        raise AssertionError(f"sample_batch must return an int64 tensor of shape (2000, {block}), "
                             f"got {getattr(batch, 'dtype', type(batch))} "
                             f"{tuple(getattr(batch, 'shape', ()))}")
    firsts = set()
    for row in batch.tolist():
        s, i = where.get(row[0], (None, None))
        if s is None or shards[s][i:i + block].tolist() != row:
            raise AssertionError(f"row {row} is not a window of consecutive tokens of one shard")
        firsts.add((s, i))
    small = sum(s == 0 for s, _ in firsts)
    if small != lengths[0] - block + 1:
        raise AssertionError(f"2000 windows reached {small} of the {lengths[0] - block + 1} windows "
                             "of the small shard: every window, first and last, must be drawn")
    share = sum(s == 0 for s, _ in (where[r] for r in batch[:, 0].tolist())) / len(batch)
    if share > 0.2:
        raise AssertionError(f"{share:.0%} of windows came from a shard that holds "
                             f"{(lengths[0] - block + 1) / (lengths[0] + lengths[1] - 2 * block + 2):.0%}"
                             " of all windows: draw windows, not shards, uniformly")
    if not torch.equal(batch, sample_batch(shards, 2000, block, batch_seed, step)):
        raise AssertionError("sample_batch is not a function of (seed, step): two calls differ")
    if torch.equal(batch[:8], sample_batch(shards, 8, block, batch_seed, step + 1)):
        raise AssertionError("the next step gave the same batch")
    world = rng.choice([2, 3])
    whole = sample_batch(shards, 2 * world, block, batch_seed, step)
    parts = [sample_batch(shards, 2, block, batch_seed, step, rank=r, world_size=world)
             for r in range(world)]
    if not torch.equal(torch.cat(parts), whole):
        raise AssertionError(f"the {world} ranks' batches of 2 must be the rows of the global "
                             f"batch of {2 * world}, in rank order")


def check_checkpoint(checkpoint_state, restore_state, seed: int) -> None:
    """Save at step k through safetensors + JSON, restore, continue: bit-identical to no break."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    config, model, optimizer = _tiny_model(rng)
    batches = [torch.randint(0, config.vocab_size, (2, config.block_size), generator=gen)
               for _ in range(6)]
    k = rng.randrange(1, 5)
    for tokens in batches[:k]:
        ref_train_step(model, optimizer, tokens, 1e-2, 1.0)
    tensors, meta = checkpoint_state(model, optimizer, k)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            save_file(tensors, Path(tmp) / "ckpt.safetensors")
            text = json.dumps(meta)
        except Exception as err:  # noqa: BLE001 - the finding is that it cannot be saved
            raise AssertionError(f"checkpoint_state's output cannot be saved "
                                 f"({type(err).__name__}: {err})") from None
        loaded, meta = load_file(Path(tmp) / "ckpt.safetensors"), json.loads(text)
    if "model.lm_head.weight" in loaded or "model.tok_emb.weight" not in loaded:
        raise AssertionError(f"weights go under 'model.<name>', the tied matrix once; got "
                             f"{sorted(loaded)[:6]}")
    for tokens in batches[k:]:
        ref_train_step(model, optimizer, tokens, 1e-2, 1.0)
    torch.manual_seed(rng.randrange(1000, 2000))
    fresh = ref_model.GPT(config)
    fresh_opt = AdamW(param_groups(fresh, 0.1), betas=(0.9, 0.95))
    step = restore_state(fresh, fresh_opt, loaded, meta)
    if step != k:
        raise AssertionError(f"restore_state returned step {step!r}, the checkpoint was at {k}")
    if fresh.lm_head.weight is not fresh.tok_emb.weight:
        raise AssertionError("restore_state broke the weight tying: copy into the parameters")
    for tokens in batches[k:]:
        ref_train_step(fresh, fresh_opt, tokens, 1e-2, 1.0)
    for (name, p), q in zip(fresh.named_parameters(), model.parameters()):
        if not torch.equal(p, q):
            raise AssertionError(f"resumed at step {k}, parameter {name} differs from training "
                                 f"straight through by {(p - q).abs().max().item():.3g}: "
                                 "a checkpoint must hold the AdamW moments and step counts")
    other = ref_model.GPT(GPTConfig(**{**config.to_dict(), "n_embd": 32}))
    raises_value_error("restore_state into a model of another config",
                       lambda: restore_state(other, None, loaded, meta))
