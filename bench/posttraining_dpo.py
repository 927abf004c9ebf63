"""Benchmark: post-training step throughput, the course's DPO step against TRL's DPOTrainer,
and the course's SFT step against its pre-training step.

What it measures: wall time (``time.perf_counter``) of whole training steps on the CPU,
at the course's ``cpu`` preset model (``PRESETS["cpu"]``: 4 layers, 4 heads, 128 wide,
context 128, a 2,048-token vocabulary; 1,066,112 parameters on both sides), randomly
initialised (step time does not depend on the weights), two comparisons side by side:

* **DPO**, batches of 16 preference pairs (32 rows) of the world's training pairs
  (``data.preference_pairs("train")``), rendered with the course tokenizer by
  ``encode_pairs``, beta 0.1, the learning rate of the course's ``DPOConfig``, clipping
  at 1, reference log-probabilities computed once before the first step on both sides.

  - the course: ``tinygpt.posttraining.preference_training.dpo_step``, the loop body of
    its ``dpo`` (the learning rate, ``sequence_logprobs``, ``dpo_loss``,
    ``clip_grad_norm``, the course's ``AdamW``, and the per-step history values it
    records) with ``nll_weight=0`` (plain sigmoid DPO, as TRL's default loss), on
    ``tinygpt.pretraining.GPT``;
  - TRL: the real ``trl.DPOTrainer`` (``trl==1.16.0``, its ``train()``), on
    ``transformers.LlamaForCausalLM`` at the same shape (hidden 128, 4 layers, 4 heads,
    SwiGLU intermediate 352 = the course's ``GPTConfig.hidden``, tied embeddings, RMSNorm
    eps 1e-5, RoPE base 10,000, 128 positions, ``attn_implementation="sdpa"``), with
    ``trl.DPOConfig`` as shipped except: the same batch, beta, learning rate and
    ``max_grad_norm``, ``precompute_ref_log_probs=True``, ``use_cpu=True``, bf16 and fp16
    off, ``gradient_checkpointing=False`` (TRL turns it on by default; the course does not
    checkpoint), ``max_length=128``, no saving, no evaluation, ``report_to="none"``, no
    progress bar, ``dataloader_num_workers=0`` and ``train_sampling_strategy="sequential"``
    so that it takes the same batches in the same order. Everything else is TRL's default:
    ``adamw_torch_fused`` (torch's fused CPU AdamW), a linear learning-rate decay, its
    fused LM head (log-probabilities of the completion tokens only, never the full
    logits), the per-step metrics it gathers. The course tokenizer reaches TRL as token
    ids written out as text ("12 7 2043") and a word-level ``PreTrainedTokenizerFast`` whose
    word i is id i, so TRL's own tokenisation and collation give back exactly the course's
    ids; the script checks that TRL's collated first batch is the course's (same ids,
    completion masks and padding, to the batch's longest row, with the same pad id). TRL
    then forwards all those positions with an attention mask; the course forwards one
    position fewer (the last token predicts nothing) and needs no mask (right padding in
    a causal model).

  A step is timed from ``on_step_begin`` to ``on_step_end`` of a ``TrainerCallback`` for
  TRL (forward, loss and metrics, backward, clipping, optimizer and scheduler steps,
  zeroing the gradients; the batch was fetched and collated before, and its logging every
  10 steps comes after), and over the same work for the course (the batch's rows are cut
  before the clock starts). Each round, both sides run the same ``--warmup`` +
  ``--steps`` batches (seeded random draws of 16 pairs, as ``dpo`` draws them), the
  warm-up steps untimed; TRL runs one ``train()`` call per round (which builds a fresh
  optimizer each time; the setup is outside the timing).

* **SFT against pre-training**, 8 rows of 128 positions (``SFTConfig.batch_rows``), the
  same model initialisation and optimizer settings (the course's AdamW, no weight decay,
  ``SFTConfig``'s learning rate, clipping at 1): ``tinygpt.posttraining.sft.sft_step`` on
  seeded random rows of the world's training chats packed by ``sft.pack`` (positions
  restarting per example, the block-diagonal mask, the masked loss), against chapter 3's
  ``tinygpt.pretraining.step.train_step`` on (8, 128) windows of the course corpus drawn
  by ``tinygpt.pretraining.data.sample_batch`` (128, not 129: the course model takes at
  most ``block_size`` tokens, and the pre-training trainer's windows are that long).
  Tokens/s = 8 x 128 / step time for both; the overhead is 1 - SFT rate / pre-training
  rate. Both run on torch's BLAS, as the chapter-4 trainers do (they do not route the
  linears to oneDNN as chapter 3's trainer does on AMD CPUs). The two steps differ in
  their losses too, not only in packing and masking: ``sft_loss`` calls
  ``F.cross_entropy`` over the 128 targets of a row, ``train_step``'s ``lm_loss`` is
  chapter 3's written-out cross-entropy over 127; so the overhead can come out below
  zero.

The sides alternate in rounds so that a change in machine load hits both; the figure is
the median step time over all timed steps, at 1 thread and at 2 (``torch.set_num_threads``,
checked inside TRL's steps too).

Run: ``.venv/bin/python bench/posttraining_dpo.py [--steps 20 --rounds 5 --warmup 2]``.
Output: a table, then one JSON line; the same JSON, with machine info, goes to
bench/results/posttraining_dpo.json.
Goals: the course DPO step at least 1.0x TRL's step rate; the SFT step's tokens/s within
10 % of the pre-training step's (packing and masking cost at most 10 %).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import os
import statistics
import tempfile
import time
import warnings

os.environ.setdefault("TQDM_DISABLE", "1")  # TRL's reference-scoring progress bar

import datasets
import torch
from tokenizers import Tokenizer as WordTokenizer
from tokenizers import models as word_models
from tokenizers import pre_tokenizers
from transformers import (LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast,
                          TrainerCallback)
from transformers.trainer_callback import PrinterCallback
from transformers.utils import logging as hf_logging
from trl import DPOConfig as TRLDPOConfig
from trl import DPOTrainer

from _common import print_table, report
from tinygpt.posttraining import data, sft
from tinygpt.posttraining.finetune import SFTConfig
from tinygpt.posttraining.preference import Completions, sequence_logprobs
from tinygpt.posttraining.preference_training import (DPOConfig, dpo_step, encode_pairs,
                                                      pair_rows)
from tinygpt.pretraining import GPT, PRESETS
from tinygpt.pretraining.data import sample_batch
from tinygpt.pretraining.optim import AdamW, param_groups
from tinygpt.pretraining.prepare import prepare_data
from tinygpt.pretraining.step import train_step
from tinygpt.runtime import machine_info
from tinygpt.tokenizer.control import END, EOT

MODEL = PRESETS["cpu"][0]
PAIRS_PER_BATCH = 16
DPO = DPOConfig(nll_weight=0.0, batch_pairs=PAIRS_PER_BATCH)  # beta 0.1, lr 1e-4, clip 1
SFT = SFTConfig()  # 8 rows, lr 1e-3, no weight decay, clip 1
SFT_ROWS = SFT.batch_rows


# --- DPO: the course -------------------------------------------------------------------

class CourseDPO:
    """The course's DPO trainer state (policy, frozen reference's log-probs, AdamW) and
    its loop body as one callable step."""

    def __init__(self, encoded: Completions, n_pairs: int, total_steps: int):
        torch.manual_seed(0)
        self.policy = GPT(MODEL).train()
        reference = copy.deepcopy(self.policy).eval().requires_grad_(False)
        with torch.no_grad():  # as dpo() does: the reference is scored once, up front
            self.ref_logps, _ = sequence_logprobs(reference, encoded)
        self.n = n_pairs
        self.optimizer = AdamW(param_groups(self.policy, 0.0), lr=DPO.max_lr)
        self.config = dataclasses.replace(DPO, steps=total_steps)  # the schedule spans a round
        self.history = {"losses": [], "chosen_logp": [], "rejected_logp": [], "margin": [],
                        "accuracy": []}

    def step(self, step: int, index: torch.Tensor, rows: Completions) -> None:
        """``dpo_step``, the body of dpo()'s loop, for the rows ``pair_rows(batch, index)``
        (cut before the clock starts)."""
        dpo_step(self.policy, self.optimizer, rows, self.ref_logps[index],
                 self.ref_logps[index + self.n], step, self.config, self.history)


# --- DPO: TRL --------------------------------------------------------------------------

def id_tokenizer(vocab_size: int, eos_id: int, pad_id: int) -> PreTrainedTokenizerFast:
    """A tokenizer whose text is token ids: the word "i" is id i, words split on spaces."""
    core = WordTokenizer(word_models.WordLevel({str(i): i for i in range(vocab_size)},
                                               unk_token="0"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=str(eos_id),
                                   pad_token=str(pad_id))


def as_text(ids: list[int]) -> str:
    return " ".join(map(str, ids))


def trl_dataset(encoded: Completions, batches: list[torch.Tensor], n: int) -> datasets.Dataset:
    """The pairs of ``batches``, in order, as prompt / chosen / rejected id text."""
    rows = {"prompt": [], "chosen": [], "rejected": []}
    for index in batches:
        for i in index.tolist():
            tokens, answer = encoded.tokens[i], encoded.completion[i]
            start = int(answer.nonzero()[0])
            rows["prompt"].append(as_text(tokens[:start].tolist()))
            for key, row in (("chosen", i), ("rejected", i + n)):
                ids = encoded.tokens[row, start:int(encoded.lengths[row])].tolist()
                rows[key].append(" " + as_text(ids))  # TRL concatenates prompt + answer
    return datasets.Dataset.from_dict(rows)


class StepTimer(TrainerCallback):
    """Seconds from each on_step_begin to its on_step_end, and the thread count inside."""

    def __init__(self):
        self.seconds: list[float] = []
        self.threads: set[int] = set()

    def on_step_begin(self, args, state, control, **kwargs):
        self.threads.add(torch.get_num_threads())
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._start)


def trl_trainer(dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerFast,
                steps: int) -> tuple[DPOTrainer, StepTimer, LlamaForCausalLM]:
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=MODEL.vocab_size, hidden_size=MODEL.n_embd, num_hidden_layers=MODEL.n_layer,
        num_attention_heads=MODEL.n_head, num_key_value_heads=MODEL.kv_heads,
        intermediate_size=MODEL.hidden, tie_word_embeddings=True, rms_norm_eps=MODEL.norm_eps,
        max_position_embeddings=MODEL.block_size, rope_theta=MODEL.rope_base,
        attn_implementation="sdpa", pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None))
    args = TRLDPOConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-trl-dpo-"), per_device_train_batch_size=PAIRS_PER_BATCH,
        beta=DPO.beta, learning_rate=DPO.max_lr, max_grad_norm=DPO.grad_clip, max_steps=steps,
        precompute_ref_log_probs=True, use_cpu=True, bf16=False, fp16=False,
        gradient_checkpointing=False, max_length=MODEL.block_size, save_strategy="no",
        eval_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0,
        train_sampling_strategy="sequential", seed=0)
    timer = StepTimer()
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[timer])
    trainer.remove_callback(PrinterCallback)  # the end-of-run metrics print; not a step cost
    if model.is_gradient_checkpointing:
        raise RuntimeError("TRL's model checkpoints activations; the course's does not")
    return trainer, timer, model


def check_same_rows(trainer: DPOTrainer, rows: Completions) -> None:
    """TRL's collated first batch must be the course's first batch, id for id."""
    collated = trainer.data_collator([trainer.train_dataset[i] for i in range(PAIRS_PER_BATCH)])
    if not (torch.equal(collated["input_ids"], rows.tokens)
            and torch.equal(collated["completion_mask"].bool(), rows.completion)
            and torch.equal(collated["attention_mask"].sum(1), rows.lengths)):
        raise RuntimeError("TRL's batch differs from the course's: the comparison would not be fair")


# --- SFT against pre-training ------------------------------------------------------------

def sft_and_pretrain(tokenizer, shards, n_batches: int):
    """Two course models from one initialisation and their steps on prebuilt batches:
    name -> (step(i)), where i picks the i-th batch."""
    packed = sft.pack(sft.chat_examples(tokenizer, [c for c, _ in data.sft_chats("train")]),
                      MODEL.block_size, tokenizer.special_tokens[EOT])
    gen = torch.Generator().manual_seed(SFT.seed)
    picks = [torch.randint(0, packed.tokens.shape[0], (SFT_ROWS,), generator=gen)
             for _ in range(n_batches)]
    sft_batches = [sft.Packed(packed.tokens[i], packed.targets[i], packed.positions[i],
                              packed.segments[i]) for i in picks]
    windows = [sample_batch(shards, SFT_ROWS, MODEL.block_size, SFT.seed, s) for s in range(n_batches)]
    torch.manual_seed(0)
    sft_model = GPT(MODEL).train()
    pre_model = copy.deepcopy(sft_model)
    sft_opt = AdamW(param_groups(sft_model, SFT.weight_decay), lr=SFT.max_lr)
    pre_opt = AdamW(param_groups(pre_model, SFT.weight_decay), lr=SFT.max_lr)
    steps = {
        "sft": lambda i: sft.sft_step(sft_model, sft_opt, sft_batches[i], SFT.max_lr, SFT.grad_clip),
        "pretrain": lambda i: train_step(pre_model, pre_opt, windows[i], SFT.max_lr, SFT.grad_clip),
    }
    fill = float((packed.segments >= 0).float().mean())
    return steps, fill, packed.tokens.shape[0]


# --- the rounds -------------------------------------------------------------------------

def measure(course: CourseDPO, dpo_rows: list[tuple[torch.Tensor, Completions]],
            trainer: DPOTrainer, timer: StepTimer, sft_steps: dict, warmup: int, n_steps: int,
            rounds: int) -> dict[str, list[float]]:
    """Per-step seconds of each side, alternating rounds of warmup + n_steps steps."""
    times: dict[str, list[float]] = {"course_dpo": [], "trl_dpo": [], "sft": [], "pretrain": []}
    total = warmup + n_steps
    for _ in range(rounds):
        for step, (index, rows) in enumerate(dpo_rows):
            start = time.perf_counter()
            course.step(step, index, rows)
            if step >= warmup:
                times["course_dpo"].append(time.perf_counter() - start)
        timer.seconds = []
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.train()
        if len(timer.seconds) != total:
            raise RuntimeError(f"TRL ran {len(timer.seconds)} steps, not {total}")
        times["trl_dpo"].extend(timer.seconds[warmup:])
        for name, step_fn in sft_steps.items():
            for i in range(total):
                start = time.perf_counter()
                step_fn(i)
                if i >= warmup:
                    times[name].append(time.perf_counter() - start)
    return times


LABELS = {"course_dpo": "course DPO step (GPT)", "trl_dpo": "TRL DPOTrainer (LlamaForCausalLM)",
          "sft": "course SFT step (packed, masked)", "pretrain": "course pre-training step"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round and side")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per thread count")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning, message=".*gradient_checkpointing.*")

    prepared = prepare_data(MODEL.vocab_size)
    tokenizer = prepared.tokenizer
    pairs = data.preference_pairs("train")
    encoded = encode_pairs(tokenizer, pairs, MODEL.block_size)
    n, total = len(pairs), args.warmup + args.steps
    gen = torch.Generator().manual_seed(DPO.seed)  # as dpo() draws its batches
    indices = [torch.randint(0, n, (PAIRS_PER_BATCH,), generator=gen) for _ in range(total)]
    dpo_rows = [(index, pair_rows(encoded, index)) for index in indices]
    dpo_tokens = statistics.mean(int(rows.lengths.sum()) for _, rows in dpo_rows)
    dpo_width = statistics.mean(rows.tokens.shape[1] for _, rows in dpo_rows)

    course = CourseDPO(encoded, n, total)
    hf_tok = id_tokenizer(MODEL.vocab_size, tokenizer.special_tokens[END], tokenizer.special_tokens[EOT])
    with contextlib.redirect_stdout(io.StringIO()):
        trainer, timer, llama = trl_trainer(trl_dataset(encoded, indices, n), hf_tok, total)
    check_same_rows(trainer, dpo_rows[0][1])
    sft_steps, fill, packed_rows = sft_and_pretrain(tokenizer, prepared.train, total)

    results, rows = {}, []
    sft_tokens = SFT_ROWS * MODEL.block_size
    for threads in args.threads:
        torch.set_num_threads(threads)
        times = measure(course, dpo_rows, trainer, timer, sft_steps, args.warmup, args.steps,
                        args.rounds)
        if timer.threads != {threads}:
            raise RuntimeError(f"TRL's steps ran at {timer.threads} threads, not {threads}")
        timer.threads = set()
        ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
        tokens = {"course_dpo": dpo_tokens, "trl_dpo": dpo_tokens, "sft": sft_tokens,
                  "pretrain": sft_tokens}
        rate = {k: 1000 * tokens[k] / v for k, v in ms.items()}
        results[str(threads)] = {
            "ms_per_step": {k: round(v, 2) for k, v in ms.items()},
            "tokens_per_s": {k: round(v) for k, v in rate.items()},
            "dpo_speedup_over_trl": round(ms["trl_dpo"] / ms["course_dpo"], 2),
            "sft_overhead": round(1 - rate["sft"] / rate["pretrain"], 3)}
        plural = "s" if threads > 1 else ""
        for name, peer in (("course_dpo", "trl_dpo"), ("trl_dpo", "trl_dpo"),
                           ("sft", "pretrain"), ("pretrain", "pretrain")):
            rows.append([f"{LABELS[name]}, {threads} thread{plural}", f"{ms[name]:.1f}",
                         f"{rate[name]:,.0f}", f"{ms[peer] / ms[name]:.2f}x"])
    params = {"course": sum(p.numel() for p in course.policy.parameters()),
              "trl_llama": sum(p.numel() for p in llama.parameters())}
    print(f"cpu preset: {MODEL.n_layer} layers, {MODEL.n_head} heads, width {MODEL.n_embd}, "
          f"context {MODEL.block_size}, vocab {MODEL.vocab_size}; parameters: course "
          f"{params['course']:,}, Llama {params['trl_llama']:,}")
    print(f"DPO: {n} training pairs, {PAIRS_PER_BATCH} a step (32 rows, {dpo_width:.0f} wide on "
          f"average, {dpo_tokens:.0f} real tokens); SFT: {packed_rows} packed rows "
          f"({100 * fill:.0f} % filled), {SFT_ROWS} a step; {args.rounds} rounds x "
          f"{args.steps} timed steps each (+{args.warmup} warm-up)\n")
    print_table(["step", "ms/step", "tokens/s", "peer's time / this"], rows)
    print("\n(tokens/s: real tokens for DPO, 8 x 128 positions for SFT and pre-training; "
          "the peer of the DPO rows is TRL, of the SFT rows the pre-training step)")
    for threads, r in results.items():
        print(f"{threads} thread(s): course DPO {r['dpo_speedup_over_trl']:.2f}x TRL's step rate; "
              f"SFT overhead {100 * r['sft_overhead']:.1f} % of the pre-training step's tokens/s")
    dpo_met = all(r["dpo_speedup_over_trl"] >= 1.0 for r in results.values())
    sft_met = all(r["sft_overhead"] <= 0.10 for r in results.values())
    print(f"\ngoal: course DPO at least 1.0x TRL's step rate -> {'met' if dpo_met else 'NOT met'}")
    print(f"goal: SFT packing and masking cost at most 10 % -> {'met' if sft_met else 'NOT met'}")
    summary = {"bench": "posttraining_dpo", "config": {
        "n_layer": MODEL.n_layer, "n_head": MODEL.n_head, "n_embd": MODEL.n_embd,
        "mlp_hidden": MODEL.hidden, "block_size": MODEL.block_size, "vocab_size": MODEL.vocab_size,
        "dpo_pairs_per_step": PAIRS_PER_BATCH, "dpo_beta": DPO.beta, "dpo_lr": DPO.max_lr,
        "dpo_mean_width": round(dpo_width, 1), "dpo_mean_tokens": round(dpo_tokens, 1),
        "sft_rows_per_step": SFT_ROWS, "sft_packed_fill": round(fill, 3)},
        "params": params, "trl_path": "DPOTrainer.train", "trl_optim": str(trainer.args.optim.value),
        "threads": results}
    report("posttraining_dpo", summary, {
        "steps_per_round": args.steps, "warmup_steps": args.warmup, "rounds": args.rounds,
        "machine": machine_info(["tinygpt", "torch", "transformers", "trl", "accelerate",
                                 "datasets"])})


if __name__ == "__main__":
    main()
