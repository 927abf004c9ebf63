"""Chapter 4's checks for notebook 1, supervised fine-tuning.

Each check draws its conversations from ``tinygpt.world`` through the course's chat
template, or random token rows, and compares with an oracle written here in plain loops:
which tokens an SFT loss may count, how examples pack into rows, which positions of a
packed row may see which, and the loss of a packed batch against every example run
alone. Part of ``tinygpt.checks.ch04``.
"""
from __future__ import annotations

import copy
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tinygpt.checks.ch03.shared import close
from tinygpt.checks.ch04.shared import IGNORE, chat_tokenizer, random_chat, tiny_gpt
from tinygpt.checks.common import mismatch, raises_value_error
from tinygpt.posttraining.template import encode_chat
from tinygpt.pretraining.optim import AdamW


def check_loss_mask(loss_mask, seed: int) -> None:
    """True exactly on the assistant turns' tokens after their role token (thinking, the
    answer, the closing <|end|>); False on system, user and tool turns and role tokens."""
    rng, tok = random.Random(seed), chat_tokenizer()
    for _ in range(6):
        chat = random_chat(rng)
        enc = encode_chat(tok, chat, generation_prompt=rng.random() < 0.3)
        got = loss_mask(enc)
        if not isinstance(got, torch.Tensor) or got.dtype != torch.bool or got.shape != (len(enc),):
            raise AssertionError(f"loss_mask must return a bool tensor of shape ({len(enc)},), got "
                                 f"{getattr(got, 'dtype', type(got).__name__)} "
                                 f"{tuple(getattr(got, 'shape', ()))}")
        want = [r == "assistant" and not o for r, o in zip(enc.role, enc.opens)]
        if got.tolist() != want:
            i = next(i for i, (a, b) in enumerate(zip(got.tolist(), want)) if a != b)
            raise mismatch(f"loss_mask at token {i}, {tok.decode([enc.ids[i]])!r} (message "
                           f"{enc.message[i]}, role {enc.role[i]}, opens a turn: {enc.opens[i]})",
                           chat, want[i], got.tolist()[i])


def _random_examples(rng: random.Random, gen: torch.Generator, n: int, longest: int):
    """(ids, mask) pairs of 2..longest tokens, each with a target to learn."""
    examples = []
    for _ in range(n):
        length = rng.randrange(2, longest + 1)
        ids = torch.randint(0, 300, (length,), generator=gen).tolist()
        mask = [rng.random() < 0.5 for _ in range(length)]
        mask[rng.randrange(1, length)] = True
        examples.append((ids, mask))
    return examples


def _pack_oracle(examples, block_size: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Greedy packing in order: inputs ids[:-1], targets ids[1:] (IGNORE where mask[1:] is
    False), positions from 0 in each example, segments the example's index (-1: padding)."""
    rows: list[list[int]] = [[]]
    for i, (ids, _) in enumerate(examples):
        if sum(len(examples[j][0]) - 1 for j in rows[-1]) + len(ids) - 1 > block_size:
            rows.append([])
        rows[-1].append(i)
    out = {"tokens": [], "targets": [], "positions": [], "segments": []}
    for members in rows:
        cols = {k: [] for k in out}
        for i in members:
            ids, mask = examples[i]
            for p in range(len(ids) - 1):
                cols["tokens"].append(ids[p])
                cols["targets"].append(ids[p + 1] if mask[p + 1] else IGNORE)
                cols["positions"].append(p)
                cols["segments"].append(i)
        pad = block_size - len(cols["tokens"])
        for key, value in (("tokens", pad_id), ("targets", IGNORE), ("positions", 0), ("segments", -1)):
            out[key].append(cols[key] + [value] * pad)
    return {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}


def check_pack(pack, seed: int) -> None:
    """Equal to greedy in-order packing (tokens, targets, positions, segments); an example
    too long for a row, one with nothing to learn, or none at all is a ValueError."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(5):
        block_size, pad_id = rng.randrange(6, 25), rng.randrange(300, 320)
        examples = _random_examples(rng, gen, rng.randrange(1, 9), block_size + 1)
        packed = pack(examples, block_size, pad_id)
        for name, want in _pack_oracle(examples, block_size, pad_id).items():
            got = getattr(packed, name, None)
            if not isinstance(got, torch.Tensor) or got.dtype != torch.long:
                raise AssertionError(f"pack(...).{name} must be a long tensor, got {got!r:.80}")
            if got.shape != want.shape or not torch.equal(got, want):
                raise mismatch(f"pack(examples, block_size={block_size}, pad_id={pad_id}).{name}",
                               [len(ids) for ids, _ in examples], want.tolist(), got.tolist())
    ids, mask = examples[0]
    raises_value_error(f"pack of an example of {block_size + 2} tokens into rows of "
                       f"{block_size}", lambda: pack([([1] * (block_size + 2), [True] * (
                           block_size + 2))], block_size, pad_id))
    raises_value_error("pack of an example with no token to learn (every mask entry after "
                       "the first False)", lambda: pack([(ids, mask), (ids, [True] + [False] * (
                           len(ids) - 1))], block_size, pad_id))
    raises_value_error("pack of no examples", lambda: pack([], block_size, pad_id))


def check_packed_mask(packed_mask, seed: int) -> None:
    """(R, T, T) bool: position t may see s when both are in one example and s <= t."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(4):
        block_size = rng.randrange(4, 20)
        examples = _random_examples(rng, gen, rng.randrange(1, 7), block_size + 1)
        segments = _pack_oracle(examples, block_size, 0)["segments"]
        got = packed_mask(segments)
        r, t = segments.shape
        want = torch.tensor([[[bool(segments[b, i] == segments[b, j]) and j <= i
                               for j in range(t)] for i in range(t)] for b in range(r)])
        if not isinstance(got, torch.Tensor) or got.dtype != torch.bool or got.shape != want.shape:
            raise AssertionError(f"packed_mask must return a bool tensor of shape {tuple(want.shape)}")
        if not torch.equal(got, want):
            b, i, j = (got != want).nonzero()[0].tolist()
            raise mismatch(f"packed_mask: row {b}, may position {i} see position {j}?",
                           segments[b].tolist(), bool(want[b, i, j]), bool(got[b, i, j]))


def _loss_alone(model, examples) -> torch.Tensor:
    """Mean cross-entropy over every example's targets, each example run by itself."""
    total, count = torch.zeros(()), 0
    for ids, mask in examples:
        logits = model(torch.tensor([ids[:-1]]))[0].float()
        for p in range(len(ids) - 1):
            if mask[p + 1]:
                total = total + F.cross_entropy(logits[p], torch.tensor(ids[p + 1]))
                count += 1
    return total / count


@dataclass
class _Packed:
    """A packed batch as the oracle builds it (the fields of ``sft.Packed``)."""

    tokens: torch.Tensor
    targets: torch.Tensor
    positions: torch.Tensor
    segments: torch.Tensor


class _NoisyOffTarget(torch.nn.Module):
    """The model, with noise added to the logits of every position that has no target."""

    def __init__(self, model, targets, gen):
        super().__init__()
        self.model, self.targets, self.gen = model, targets, gen

    def forward(self, *args, **kwargs):
        logits = self.model(*args, **kwargs)
        noise = torch.randn(logits.shape, generator=self.gen) * 5
        return logits + noise * (self.targets == IGNORE)[..., None]


def check_sft_loss(sft_loss, seed: int) -> None:
    """The mean cross-entropy over the targets of a packed batch equals that of its examples
    run one by one; logits at positions without a target change nothing."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for trial in range(3):
        config, model = tiny_gpt(rng)
        examples = _random_examples(rng, gen, rng.randrange(2, 6), config.block_size // 2)
        packed = _Packed(**_pack_oracle(examples, config.block_size, 1))
        noise = torch.Generator().manual_seed(1000 * seed + trial)  # its own: gen stays put
        with torch.no_grad():
            got = sft_loss(model, packed)
            want = _loss_alone(model, examples)
            close(f"sft_loss of {len(examples)} examples packed into {packed.tokens.shape[0]} "
                  "row(s) against the examples run alone", got, want)
            noisy = sft_loss(_NoisyOffTarget(model, packed.targets, noise), packed)
            close("sft_loss with the logits changed where no target is", noisy, want)


def _reference_step(model, optimizer, packed, lr: float, clip: float) -> torch.Tensor:
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    t = packed.tokens.shape[1]
    seg = packed.segments
    mask = (seg[:, :, None] == seg[:, None, :]) & torch.ones(t, t, dtype=torch.bool).tril()
    logits = model(packed.tokens, positions=packed.positions, mask=mask)
    loss = F.cross_entropy(logits.flatten(0, 1).float(), packed.targets.flatten(),
                           ignore_index=IGNORE)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return loss.detach()


def check_sft_step(sft_step, seed: int) -> None:
    """Two steps equal to set lr, zero the gradients, the SFT loss, backward, clip, AdamW;
    returns the loss before the update."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    config, model = tiny_gpt(rng)
    ref = copy.deepcopy(model)
    opt, ref_opt = (AdamW(m.parameters(), lr=1e-3, weight_decay=0.1) for m in (model, ref))
    for p in model.parameters():  # stale gradients that the step must clear
        p.grad = torch.randn(p.shape, generator=gen)
    for step in range(2):
        examples = _random_examples(rng, gen, rng.randrange(2, 6), config.block_size // 2)
        packed = _Packed(**_pack_oracle(examples, config.block_size, 1))
        lr, clip = rng.choice([1e-3, 3e-3]), rng.choice([0.05, 1.0])
        got = sft_step(model, opt, packed, lr, clip)
        want = _reference_step(ref, ref_opt, packed, lr, clip)
        close(f"the loss sft_step returns (step {step}, lr {lr}, clip {clip})", got, want)
        for (name, a), b in zip(model.named_parameters(), ref.parameters()):
            close(f"parameter {name} after step {step} (lr {lr}, clip {clip}) against set lr, "
                  "zero_grad, loss, backward, clip, optimizer.step", a, b, atol=1e-6)
