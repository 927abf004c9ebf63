"""The pre-training command (chapter 3): train the course GPT on the course corpus.

    python -m tinygpt.train                             # preset "cpu": minutes on 2 cores
    python -m tinygpt.train --preset tiny --max-steps 50 --device auto
    torchrun --standalone --nproc_per_node=8 -m tinygpt.train --preset gpu

A thin driver, after nanoGPT's ``train.py`` with argparse flags in place of its
configurator: one flag per field of the model and training configs on top of a preset,
then ``tinygpt.pretraining.trainer.train`` (the loop: data, schedule, evaluation,
checkpoints, DDP under torchrun), a summary line and a sample. ``--cpu-matmul`` picks
the CPU's matmul library (``tinygpt.kernels.cpu_matmul``). Drivers may import any
step; no step imports a driver.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

from tinygpt.kernels.cpu_matmul import resolve_backend
from tinygpt.pretraining.config import PRESETS, GPTConfig, TrainConfig
from tinygpt.pretraining.trainer import Run, sample_text, train
from tinygpt.runtime import CACHE_DIR, machine_info

SAMPLE_PROMPT = "The bank by the river"


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
            args.report.write_text(json.dumps({**h, "sample": [SAMPLE_PROMPT, sample],
                                               "machine": machine_info(["tinygpt", "torch"])}) + "\n")
    return run


if __name__ == "__main__":
    main()
