"""The evaluate command: chapter 5's report card for one or more checkpoints.

    python -m tinygpt.evaluate CHECKPOINT [CHECKPOINT ...] [--out DIR] [--report FILE]

Prints the card (Markdown) and writes ``report.md``, ``report.json`` and ``report.png``
to ``--out`` (default ``.cache/reports``): per checkpoint perplexity and bits per byte
on held-out text, world QA exact match and multiple-choice accuracy on held-in and
held-out facts, pass@1 and pass@k on held-out verifiable tasks, each with a 95 %
bootstrap interval; paired differences between the checkpoints, Bradley-Terry and Elo
ratings, and the contamination of the evaluation sets by the training corpus (see
``tinygpt.evaluation.report``). A driver over chapter 5's code (``make report``,
``make report-record``); a checkpoint that does not load or settings that cannot give a
number are a one-line error, and nothing is written.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

from tinygpt.deployment.loading import load, load_tokenizer
from tinygpt.evaluation.report import (METRICS, ReportConfig, held_out_pieces, markdown,
                                       report_card, training_corpus)
from tinygpt.runtime import CACHE_DIR, machine_info, pick_device

OPTIONS = ("pieces", "piece_bytes", "samples", "k", "resamples", "ngram", "seed", "level")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("checkpoints", type=Path, nargs="+",
                        help="model folders (chapter 3 or 4 checkpoints, chapter 6 quantised); "
                             "the first one's training data gives the held-out text and corpus")
    parser.add_argument("--out", type=Path, default=CACHE_DIR / "reports")
    parser.add_argument("--report", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    defaults = ReportConfig()
    for field in OPTIONS:
        parser.add_argument(f"--{field.replace('_', '-')}", default=getattr(defaults, field),
                            type=float if field == "level" else int)
    parser.add_argument("--max-items", type=int, default=None,
                        help="score only the first items of each set (a quick look)")
    args = parser.parse_args(argv)
    config = ReportConfig(**{f: getattr(args, f) for f in (*OPTIONS, "max_items")})
    if not 1 <= config.k <= config.samples:
        parser.error(f"pass@k needs 1 <= k <= samples, got k={config.k}, samples={config.samples}")
    if min(config.pieces, config.piece_bytes, config.resamples, config.ngram,
           config.max_items or 1) < 1:
        parser.error("--pieces, --piece-bytes, --resamples, --ngram and --max-items must be "
                     "at least 1")
    if not 0 < config.level < 1:
        parser.error(f"--level must be in (0, 1), got {config.level}")
    names = [str(p) for p in args.checkpoints]
    if len(set(names)) != len(names):
        parser.error("a checkpoint is named twice")
    device = pick_device(args.device)
    try:
        models = [load(p, device) for p in args.checkpoints]
        tokenizers = [load_tokenizer(p) for p in args.checkpoints]
        texts = held_out_pieces(args.checkpoints[0], config.pieces, config.piece_bytes)
        corpus = training_corpus(args.checkpoints[0])
    except (ValueError, OSError, KeyError) as err:
        parser.error(f"{err}\n(`make train` writes a chapter-3 checkpoint to "
                     f"{CACHE_DIR / 'runs' / 'cpu'}, `make align` a chapter-4 one beside it)")
    began = time.perf_counter()
    try:
        card = report_card([p.name for p in args.checkpoints], models, tokenizers, texts, corpus,
                           config, progress=not args.quiet)
    except ValueError as err:
        parser.error(str(err))
    card.update(paths=names, device=device, seconds=time.perf_counter() - began,
                machine=machine_info(["tinygpt", "torch"]))
    text = markdown(card)
    matplotlib.use("Agg")
    from tinygpt import plots
    fig = plots.report_card(card, METRICS)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text(text + "\n")
    (args.out / "report.json").write_text(json.dumps(card) + "\n")
    fig.savefig(args.out / "report.png", dpi=120, bbox_inches="tight")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(card) + "\n")
    print(text)
    print(f"\nreport card in {args.out} ({card['seconds']:.0f} s)")
    return card


if __name__ == "__main__":
    main()
