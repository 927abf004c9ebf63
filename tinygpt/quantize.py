"""The quantise command: a course checkpoint in int8 or int4, and what each scheme costs.

    python -m tinygpt.quantize save CHECKPOINT OUT_DIR --bits 4 --group-size 64
    python -m tinygpt.quantize compare CHECKPOINT [--report bench/results/deployment_quantize_cpu.json]

``save`` writes a quantised folder (chapter 6's format: ``model.safetensors``,
``config.json``, and the checkpoint's ``tokenizer.json``) that ``tinygpt.deployment.load``
reads back, and prints the sizes and the validation perplexity before and after.
``compare`` prints chapter 6's table for every scheme (fp32, bf16, int8, int4 at group
sizes 128, 64, 32): bits per weight, bytes in memory and on disk, perplexity. A
driver over chapter 6's code (``make quantize``, ``make quantize-record``); a bad
checkpoint or a scheme the model cannot take is a one-line error, and nothing is written.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

from tinygpt.deployment.compare import compare, table
from tinygpt.deployment.quantized import quantize_model, save_quantized, weight_bytes
from tinygpt.pretraining.checkpoint import load_model
from tinygpt.pretraining.trainer import checkpoint_data, estimate_loss, run_tokenizer
from tinygpt.runtime import CACHE_DIR, machine_info


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    save = sub.add_parser("save", help="write a quantised folder")
    save.add_argument("checkpoint", type=Path)
    save.add_argument("out", type=Path)
    save.add_argument("--bits", type=int, choices=[4, 8], default=8)
    save.add_argument("--group-size", type=int, default=64, help="int4: inputs per scale")
    save.add_argument("--symmetric", action="store_true", help="int4: symmetric grid")
    save.add_argument("--head", action="store_true", help="quantise the output layer too")
    cmp = sub.add_parser("compare", help="size and perplexity of every scheme")
    cmp.add_argument("checkpoint", type=Path, nargs="?", default=CACHE_DIR / "runs" / "cpu")
    cmp.add_argument("--report", type=Path, default=None, help="also write the rows here")
    for p in (save, cmp):
        p.add_argument("--batches", type=int, default=16, help="validation batches of 16")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    try:
        model = load_model(args.checkpoint)
        shards = checkpoint_data(args.checkpoint).val
    except (ValueError, OSError) as err:
        parser.error(f"{err}\n(no checkpoint there? `make train` writes one to "
                     f"{CACHE_DIR / 'runs' / 'cpu'})")
    if args.command == "compare":
        rows = compare(model, shards, batches=args.batches, progress=True)
        report = {"checkpoint": str(args.checkpoint), "model": model.config.to_dict(),
                  "parameters": sum(p.numel() for p in model.parameters()),
                  "eval_tokens": args.batches * 16 * model.config.block_size,
                  "rows": {r["scheme"].replace(" ", "_"): r for r in rows},
                  "seconds": time.perf_counter() - began,
                  "machine": machine_info(["tinygpt", "torch", "safetensors"])}
        if args.report:
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_text(json.dumps(report, indent=1) + "\n")
        print(table(rows))
        return report
    before_bytes, before = weight_bytes(model), estimate_loss(model, shards, args.batches, 16, "cpu")
    try:
        quantize_model(model, args.bits, args.group_size, head=args.head, symmetric=args.symmetric)
    except ValueError as err:
        parser.error(str(err))
    after = estimate_loss(model, shards, args.batches, 16, "cpu")
    save_quantized(model, args.out)
    if (args.checkpoint / "tokenizer.json").exists():
        shutil.copyfile(args.checkpoint / "tokenizer.json", args.out / "tokenizer.json")
    else:  # a run saved before checkpoints carried their tokenizer
        run_tokenizer(args.checkpoint).save(args.out / "tokenizer.json")
    report = {"bytes_before": before_bytes, "bytes_after": weight_bytes(model),
              "perplexity_before": math.exp(before), "perplexity_after": math.exp(after)}
    print(f"{args.bits}-bit model in {args.out}: weights {before_bytes / 1e6:.2f} MB -> "
          f"{report['bytes_after'] / 1e6:.2f} MB, validation perplexity "
          f"{report['perplexity_before']:.3f} -> {report['perplexity_after']:.3f}")
    return report


if __name__ == "__main__":
    main()
