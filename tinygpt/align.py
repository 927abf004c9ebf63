"""The post-training command (chapter 4): SFT, a reward model, DPO and GRPO, then a report.

    python -m tinygpt.align                     # .cache/runs/cpu (make train) -> .cache/runs/cpu-aligned
    python -m tinygpt.align --base DIR --out DIR --report FILE.json

A thin driver over ``tinygpt.posttraining``: fine-tune the chapter-3 checkpoint on the
world's chats; train a reward model on preference pairs; draft an answer to every
training question with the fine-tuned model, critique and revise the drafts against
the course's principles (``constitution``) and add the revised pairs to DPO's; train
DPO from the fine-tuned model, then GRPO from the DPO model on the checkable tasks that
need more than recall (sums, differences, comparisons).
Each stage shows a progress bar. It then measures, on held-in and held-out questions,
exact match of the base, SFT, DPO and GRPO models, the reward model's pairwise
accuracy, and the task accuracy before and after GRPO, prints the table, and writes
the GRPO model as the aligned checkpoint (chapter 3's format, with its tokenizer), which
later chapters load with ``tinygpt.pretraining.checkpoint.load_model``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from tinygpt.posttraining import data
from tinygpt.posttraining.constitution import PRINCIPLES
from tinygpt.posttraining.finetune import SFTConfig, exact_match, finetune
from tinygpt.posttraining.grpo import revision_pairs
from tinygpt.posttraining.preference_training import (DPOConfig, RewardConfig, dpo,
                                                      reward_accuracy, train_reward_model)
from tinygpt.posttraining.rl import GRPOConfig, grpo, reply_text, sample_groups, task_accuracy
from tinygpt.posttraining.template import encode_chat
from tinygpt.pretraining.checkpoint import load_model, save_checkpoint
from tinygpt.pretraining.model import GPT
from tinygpt.pretraining.trainer import run_tokenizer
from tinygpt.runtime import CACHE_DIR, machine_info, pick_device
from tinygpt.tokenizer import Tokenizer
from tinygpt.tokenizer.control import END

STAGES = ("base", "sft", "dpo", "grpo")


def revised_pairs(model: GPT, tokenizer: Tokenizer, items: list, seed: int = 0) -> list:
    """One sampled draft per (chat, fact) item, critiqued and revised against PRINCIPLES."""
    prompts = [[m for m in chat if m["role"] != "assistant"] for chat, _ in items]
    ids = [encode_chat(tokenizer, p, generation_prompt=True).ids for p in prompts]
    groups = sample_groups(model, ids, 1, 40, 1.0, tokenizer.special_tokens[END],
                           torch.Generator().manual_seed(seed))
    drafts = [reply_text(tokenizer, g[0]).strip() for g in groups]
    return revision_pairs(prompts, [f for _, f in items], drafts, PRINCIPLES)


def align(base: GPT, tokenizer: Tokenizer, sft_cfg: SFTConfig, reward_cfg: RewardConfig,
          dpo_cfg: DPOConfig, grpo_cfg: GRPOConfig, progress: bool = True) -> tuple[dict, dict]:
    """The four models and the report: settings, histories and the measured table."""
    held_in, held_out = data.sft_chats("train"), data.sft_chats("held_out")
    pairs, held_out_pairs = data.preference_pairs("train"), data.preference_pairs("held_out")
    tasks, held_out_tasks = data.verifiable_tasks("train"), data.verifiable_tasks("held_out")
    began = time.perf_counter()
    models = {"base": base}
    models["sft"], sft_h = finetune(base, tokenizer, [c for c, _ in held_in], sft_cfg, progress)
    reward_model, reward_h = train_reward_model(models["sft"], tokenizer, pairs, reward_cfg,
                                                progress)
    revised = revised_pairs(models["sft"], tokenizer, held_in)
    models["dpo"], dpo_h = dpo(models["sft"], tokenizer, pairs + revised, dpo_cfg, progress)
    # Lookups are what SFT taught (nearly all right): their groups all score 1 and teach
    # nothing, so GRPO trains on the tasks that need more than recall.
    hard = [t for t in tasks if t.kind != "lookup"]
    models["grpo"], grpo_h = grpo(models["dpo"], tokenizer, hard, grpo_cfg, progress)
    report = {
        "exact_match": {name: {"held_in": exact_match(m, tokenizer, held_in),
                               "held_out": exact_match(m, tokenizer, held_out)}
                        for name, m in models.items()},
        "reward_accuracy": {"held_in": reward_accuracy(reward_model, tokenizer, pairs),
                            "held_out": reward_accuracy(reward_model, tokenizer, held_out_pairs)},
        "task_accuracy": {stage: {"held_in": task_accuracy(models[stage], tokenizer, tasks),
                                  "held_out": task_accuracy(models[stage], tokenizer,
                                                            held_out_tasks)}
                          for stage in ("dpo", "grpo")},
        "data": {"chats": len(held_in), "held_out_chats": len(held_out), "pairs": len(pairs),
                 "revised_pairs": len(revised),
                 "tasks": len(tasks), "grpo_tasks": len(hard),
                 "held_out_tasks": len(held_out_tasks)},
        "revised_examples": [{"draft": p.rejected, "revision": p.chosen} for p in revised[:6]],
        "history": {"sft": sft_h, "reward": reward_h, "dpo": dpo_h, "grpo": grpo_h},
    }
    report["seconds"] = time.perf_counter() - began
    return models, report


def table(report: dict) -> str:
    """The measured figures as plain text."""
    em, ta, ra = report["exact_match"], report["task_accuracy"], report["reward_accuracy"]
    lines = [f"{'exact match':<14}{'held-in':>9}{'held-out':>10}"]
    lines += [f"{stage:<14}{em[stage]['held_in']:>9.1%}{em[stage]['held_out']:>10.1%}"
              for stage in STAGES]
    lines += ["", f"reward model pairwise accuracy: held-in {ra['held_in']:.1%}, "
                  f"held-out {ra['held_out']:.1%}",
              f"GRPO task accuracy (every kind): held-in {ta['dpo']['held_in']['all']:.1%}"
              f" -> {ta['grpo']['held_in']['all']:.1%}, held-out "
              f"{ta['dpo']['held_out']['all']:.1%} -> {ta['grpo']['held_out']['all']:.1%}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--base", type=Path, default=CACHE_DIR / "runs" / "cpu",
                        help="the chapter-3 checkpoint folder (make train writes the default)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the aligned checkpoint goes (default: BASE-aligned)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    parser.add_argument("--report", type=Path, default=None, help="also write the report here")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    for stage, cls in (("sft", SFTConfig), ("reward", RewardConfig), ("dpo", DPOConfig),
                       ("grpo", GRPOConfig)):
        parser.add_argument(f"--{stage}-steps", type=int, default=cls.steps,
                            help=f"{stage} steps")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    try:
        base = load_model(args.base, device)
        tokenizer = run_tokenizer(args.base)
    except (ValueError, OSError) as err:
        parser.error(f"{err}\n(no chapter-3 checkpoint there? `make train` writes one to "
                     f"{CACHE_DIR / 'runs' / 'cpu'})")
    if any(getattr(args, f"{s}_steps") < 1 for s in ("sft", "reward", "dpo", "grpo")):
        parser.error("every stage needs at least one step")
    models, report = align(base, tokenizer, SFTConfig(steps=args.sft_steps),
                           RewardConfig(steps=args.reward_steps), DPOConfig(steps=args.dpo_steps),
                           GRPOConfig(steps=args.grpo_steps), progress=not args.quiet)
    out = args.out or args.base.with_name(args.base.name + "-aligned")
    save_checkpoint(out, models["grpo"])
    tokenizer.save(out / "tokenizer.json")
    report = {"base": str(args.base), "device": device, **report,
              "machine": machine_info(["tinygpt", "torch"])}
    (out / "align.json").write_text(json.dumps(report) + "\n")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report) + "\n")
    print(table(report))
    print(f"aligned checkpoint in {out} ({report['seconds']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
