"""Benchmark: chapter 5's multiple-choice scoring by log-likelihood, the course's batched
scorer against one option at a time and against lm-evaluation-harness on the same pairs.

What it measures: on the chapter-3 checkpoint (``--checkpoint``, ``make train`` writes
``.cache/runs/cpu``) and the world's multiple-choice items
(``tinygpt.evaluation.items.choice_items``, held-in and held-out; ``--items N`` keeps the
first N of each split), three ways to get the summed log-probability of every option's
tokens after its prompt:

* (a) **the course, batched**: ``tinygpt.evaluation.metrics.choice_logprobs`` once per
  item, its options (4) right-padded into one batch, one forward pass per item;
* (b) **the course, one option at a time**: the same function given one option, so one
  forward pass per (prompt, option) pair, the same tokens and the same numbers;
* (c) **lm-evaluation-harness** (``lm_eval==0.4.13``): the checkpoint exported by
  ``tinygpt.export.export_hf`` (what ``python -m tinygpt.export hf`` writes; a
  ``LlamaForCausalLM`` whose logits equal the course model's, and its ``tokenizer.json``)
  to a temporary folder, loaded by ``lm_eval.models.huggingface.HFLM`` (``device="cpu"``,
  float32, ``batch_size`` = ``--batch-size``, ``add_bos_token=False`` as the course scores
  without one), and its ``loglikelihood`` called on ``lm_eval.api.instance.Instance``
  requests of type ``"loglikelihood"``, one per pair, ``(prompt, option)``. lm-eval
  encodes prompt + option together and cuts the ids at the length of the prompt's own
  encoding; it sorts the requests by length and batches across items.

Checked, not timed: (b) against (a), (c) against (a) per pair (the largest absolute
difference, over all pairs and over the pairs that lm-eval splits into the same tokens as
the course), and how many pairs lm-eval tokenises differently from the course and why
(the exported HF tokenizer encodes the joined text differently from the course tokenizer,
or the course tokenizer itself merges across the prompt/option boundary). Accuracy both
ways, per split: the course's ``pick_choice`` with ``normalize=False`` (acc) and ``True``
(acc_norm, per UTF-8 byte of the option, leading space included) against lm-eval's own
``acc`` and ``acc_norm`` (per character of the option; the options are ASCII, so the
same count) from ``lm_eval.simple_evaluate`` running two real custom tasks (a task
config dict each: ``output_type: multiple_choice``, ``doc_to_text`` the prompt,
``doc_to_choice`` the options, ``doc_to_target`` the answer, ``target_delimiter: ""``
as the options carry their space, zero-shot) over a local JSON-lines dataset
(``dataset_path: json``) written to the temporary folder, with ``HF_HUB_OFFLINE``,
``HF_DATASETS_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` set and the datasets cache in the
temporary folder: nothing is downloaded. Where an lm-eval path fails, its error is
recorded in the JSON and the rest still runs.

Timed: wall seconds (``time.perf_counter``) of one pass over all items, tokenisation
included, for (a), (b) and (c), one untimed pass of each first, then ``--repeats`` rounds
that run the three in turn (so that a change in machine load hits all three); the figure
is the median, as items/s, at 1 thread and at 2 (``torch.set_num_threads``; lm-eval runs
in this process, on the same threads).

Run: ``.venv/bin/python bench/evaluation_scoring.py [--repeats 3 --batch-size 4]``.
Output: two tables, then one JSON line; the same JSON, with every run's time and machine
info, goes to bench/results/evaluation_scoring.json.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before datasets, transformers and lm_eval are imported: offline, and caches kept apart.
WORK = Path(tempfile.mkdtemp(prefix="bench-eval-scoring-"))
for _flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_flag] = "1"
os.environ["HF_DATASETS_CACHE"] = str(WORK / "datasets-cache")
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse
import contextlib
import io
import json
import shutil
import statistics
import time
import traceback
import warnings

import torch

from _common import print_table, report
from tinygpt.evaluation.items import ChoiceItem, choice_items
from tinygpt.evaluation.metrics import choice_logprobs, pick_choice
from tinygpt.export import export_hf
from tinygpt.pretraining.checkpoint import load_model
from tinygpt.pretraining.trainer import run_tokenizer
from tinygpt.runtime import machine_info

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = ROOT / ".cache" / "runs" / "cpu"
SPLITS = ("held_in", "held_out")
SIDES = ("course_batched", "course_one_at_a_time", "lm_eval")
LABELS = {"course_batched": "(a) course choice_logprobs, options batched",
          "course_one_at_a_time": "(b) course, one option at a time",
          "lm_eval": "(c) lm-eval HFLM.loglikelihood"}


def error_text(err: BaseException) -> str:
    """The exception's type and message, and where it was raised (for the record)."""
    where = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    at = f" (at {Path(where.filename).name}:{where.lineno})" if where else ""
    return f"{type(err).__name__}: {err}{at}"


# --- the three scorers ---------------------------------------------------------------

def course_batched(model, tokenizer, items: list[ChoiceItem]) -> list[float]:
    """(a): per item, all options in one batch; the summed log-probs, item by item."""
    out: list[float] = []
    for item in items:
        out.extend(choice_logprobs(model, tokenizer, item.prompt, list(item.choices)).tolist())
    return out


def course_one_at_a_time(model, tokenizer, items: list[ChoiceItem]) -> list[float]:
    """(b): one forward pass per (prompt, option) pair."""
    return [float(choice_logprobs(model, tokenizer, item.prompt, [choice])[0])
            for item in items for choice in item.choices]


def lm_eval_requests(items: list[ChoiceItem]) -> list:
    from lm_eval.api.instance import Instance
    return [Instance(request_type="loglikelihood", doc={"prompt": item.prompt},
                     arguments=(item.prompt, choice), idx=j)
            for item in items for j, choice in enumerate(item.choices)]


def lm_eval_scores(lm, requests: list) -> list[float]:
    """(c): lm-eval's summed log-probs, in the requests' order."""
    return [float(logp) for logp, _greedy in lm.loglikelihood(requests, disable_tqdm=True)]


# --- lm-eval: the checks -------------------------------------------------------------

def token_splits(lm, hf_tokenizer, tokenizer, items: list[ChoiceItem]) -> dict:
    """Pairs whose (context ids, continuation ids) in lm-eval differ from the course's,
    and why: the HF tokenizer reads the joined text differently from the course tokenizer,
    or the course tokenizer itself merges across the prompt/option boundary."""
    differ, hf_vs_course, boundary, examples = [], 0, 0, []
    k = 0
    for item in items:
        context = tokenizer.encode_ordinary(item.prompt)
        for choice in item.choices:
            option = tokenizer.encode_ordinary(choice)
            lm_context, lm_option = lm._encode_pair(item.prompt, choice)
            if (list(lm_context), list(lm_option)) != (context, option):
                differ.append(k)
                joined = tokenizer.encode_ordinary(item.prompt + choice)
                hf_joined = hf_tokenizer.encode(item.prompt + choice, add_special_tokens=False)
                if hf_joined != joined:
                    hf_vs_course += 1
                if joined != context + option:
                    boundary += 1
                if len(examples) < 5:
                    examples.append({
                        "prompt": item.prompt, "option": choice,
                        "course_option_tokens": [tokenizer.decode([i]) for i in option],
                        "lm_eval_option_tokens": [tokenizer.decode([i]) for i in lm_option]})
            k += 1
    return {"pairs_split_differs": len(differ), "differing_pairs": differ,
            "hf_tokenizer_differs_from_course": hf_vs_course,
            "course_tokenizer_merges_across_boundary": boundary, "examples": examples}


def task_config(split: str, path: Path) -> dict:
    """lm-eval's config of one custom multiple-choice task over a local JSON-lines file."""
    return {"task": f"tinygpt_{split}", "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(path)}}, "test_split": "test",
            "output_type": "multiple_choice", "doc_to_text": "{{prompt}}",
            "doc_to_choice": "choices", "doc_to_target": "answer",
            "target_delimiter": "", "num_fewshot": 0,
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}]}


def run_simple_evaluate(lm, by_split: dict[str, list[ChoiceItem]]) -> dict:
    """lm-eval's acc and acc_norm per split from ``simple_evaluate`` on two custom tasks,
    and its per-pair log-probs (from the logged samples, in the items' order)."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    tasks = []
    for split, items in by_split.items():
        path = WORK / f"{split}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for item in items:
                f.write(json.dumps({"prompt": item.prompt, "choices": list(item.choices),
                                    "answer": item.answer}) + "\n")
        tasks.append(task_config(split, path))
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bars
        out = simple_evaluate(model=lm, tasks=tasks, num_fewshot=0, log_samples=True,
                              bootstrap_iters=0, task_manager=TaskManager(include_defaults=False),
                              random_seed=0)
    seconds = time.perf_counter() - start
    accuracy, logps = {}, {}
    for split, items in by_split.items():
        name = f"tinygpt_{split}"
        result = out["results"][name]
        accuracy[split] = {"acc": result["acc,none"], "acc_norm": result["acc_norm,none"],
                           "items": result.get("sample_len", len(items))}
        samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
        logps[split] = [float(r[0]) for s in samples for r in s["filtered_resps"]]
    return {"accuracy": accuracy, "logprobs": logps, "seconds": seconds}


# --- main -----------------------------------------------------------------------------

def course_accuracy(model, tokenizer, items: list[ChoiceItem]) -> dict:
    acc = statistics.mean(pick_choice(model, tokenizer, i.prompt, list(i.choices)) == i.answer
                          for i in items)
    norm = statistics.mean(pick_choice(model, tokenizer, i.prompt, list(i.choices),
                                       normalize=True) == i.answer for i in items)
    return {"acc": float(acc), "acc_norm": float(norm), "items": len(items)}


def max_diff(a: list[float], b: list[float], keep=None) -> float | None:
    pairs = [(x, y) for k, (x, y) in enumerate(zip(a, b, strict=True)) if keep is None or k in keep]
    return max((abs(x - y) for x, y in pairs), default=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help="a chapter-3 checkpoint folder (make train writes .cache/runs/cpu)")
    parser.add_argument("--items", type=int, default=None,
                        help="keep the first N items of each split (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per thread count")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=4,
                        help="lm-eval HFLM's batch size (the course batches an item's 4 options)")
    args = parser.parse_args()
    if not (args.checkpoint / "config.json").exists() or not (args.checkpoint / "model.safetensors").exists():
        parser.error(f"no checkpoint at {args.checkpoint}: run make train (it writes .cache/runs/cpu)")
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    try:
        import datasets
        datasets.disable_progress_bars()
    except ImportError:
        pass

    load_before = [round(x, 2) for x in os.getloadavg()]
    model = load_model(args.checkpoint)
    tokenizer = run_tokenizer(args.checkpoint)
    by_split = {s: choice_items(s)[:args.items] for s in SPLITS}
    items = [i for s in SPLITS for i in by_split[s]]
    n_items, n_pairs = len(items), sum(len(i.choices) for i in items)
    offsets = {}
    k = 0
    for s in SPLITS:
        n = sum(len(i.choices) for i in by_split[s])
        offsets[s] = (k, k + n)
        k += n

    scores = {"course_batched": course_batched(model, tokenizer, items),
              "course_one_at_a_time": course_one_at_a_time(model, tokenizer, items)}
    errors: dict[str, str] = {}
    lm = requests = None
    checks: dict = {"one_at_a_time_vs_batched_max_abs_diff":
                    max_diff(scores["course_one_at_a_time"], scores["course_batched"])}
    try:
        from lm_eval.models.huggingface import HFLM
        export_dir = export_hf(model, tokenizer, WORK / "hf")
        lm = HFLM(pretrained=str(export_dir), device="cpu", batch_size=args.batch_size,
                  dtype="float32", add_bos_token=False)
        requests = lm_eval_requests(items)
        scores["lm_eval"] = lm_eval_scores(lm, requests)
        split = token_splits(lm, lm.tokenizer, tokenizer, items)
        differing = set(split["differing_pairs"])
        same = set(range(n_pairs)) - differing
        checks.update({
            "lm_eval_vs_course_max_abs_diff": max_diff(scores["lm_eval"], scores["course_batched"]),
            "lm_eval_vs_course_max_abs_diff_same_tokens":
                max_diff(scores["lm_eval"], scores["course_batched"], same),
            "lm_eval_vs_course_max_abs_diff_split_differs":
                max_diff(scores["lm_eval"], scores["course_batched"], differing),
            "lm_eval_max_length": lm.max_length, "lm_eval_add_bos_token": lm.add_bos_token,
            **split})
    except Exception as err:  # noqa: BLE001 - recorded, and the rest still runs
        errors["lm_eval_loglikelihood"] = error_text(err)
        lm = None

    accuracy = {s: {"course": course_accuracy(model, tokenizer, by_split[s])} for s in SPLITS}
    simple = None
    if lm is not None:
        try:
            simple = run_simple_evaluate(lm, by_split)
            for s in SPLITS:
                accuracy[s]["lm_eval"] = simple["accuracy"][s]
            flat = [x for s in SPLITS for x in simple["logprobs"][s]]
            checks["simple_evaluate_vs_loglikelihood_max_abs_diff"] = max_diff(flat, scores["lm_eval"])
            checks["simple_evaluate_vs_course_max_abs_diff"] = max_diff(flat, scores["course_batched"])
        except Exception as err:  # noqa: BLE001
            errors["lm_eval_simple_evaluate"] = error_text(err)

    sides = [s for s in SIDES if s != "lm_eval" or lm is not None]
    run = {"course_batched": lambda: course_batched(model, tokenizer, items),
           "course_one_at_a_time": lambda: course_one_at_a_time(model, tokenizer, items),
           "lm_eval": lambda: lm_eval_scores(lm, requests)}
    results, runs, rows = {}, {}, []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for side in sides:  # one untimed pass of each at this thread count
            run[side]()
        times: dict[str, list[float]] = {side: [] for side in sides}
        for _ in range(args.repeats):
            for side in sides:
                start = time.perf_counter()
                run[side]()
                times[side].append(time.perf_counter() - start)
        if torch.get_num_threads() != threads:
            raise RuntimeError(f"ran at {torch.get_num_threads()} threads, not {threads}")
        seconds = {side: statistics.median(v) for side, v in times.items()}
        rate = {side: n_items / v for side, v in seconds.items()}
        results[str(threads)] = {
            "seconds_per_pass": {k: round(v, 4) for k, v in seconds.items()},
            "items_per_s": {k: round(v, 1) for k, v in rate.items()},
            "pairs_per_s": {k: round(v * n_pairs / n_items, 1) for k, v in rate.items()},
            "batched_over_one_at_a_time": round(rate["course_batched"] / rate["course_one_at_a_time"], 2)}
        if "lm_eval" in rate:
            results[str(threads)]["batched_over_lm_eval"] = round(rate["course_batched"] / rate["lm_eval"], 2)
        runs[str(threads)] = {k: [round(x, 4) for x in v] for k, v in times.items()}
        plural = "s" if threads > 1 else ""
        for side in sides:
            rows.append([f"{LABELS[side]}, {threads} thread{plural}", f"{seconds[side]:.3f}",
                         f"{rate[side]:,.1f}", f"{rate['course_batched'] / rate[side]:.2f}x"])

    print(f"checkpoint {args.checkpoint}: {model.config.n_layer} layers, width "
          f"{model.config.n_embd}, context {model.config.block_size}, vocab "
          f"{model.config.vocab_size}; {n_items} items ({', '.join(f'{s} {len(by_split[s])}' for s in SPLITS)}), "
          f"{n_pairs} (prompt, option) pairs; lm-eval batch size {args.batch_size}; "
          f"median of {args.repeats} rounds\n")
    print_table(["scorer", "s/pass", "items/s", "(a)'s items/s / this"], rows)
    print()
    acc_rows = []
    for s in SPLITS:
        course, peer = accuracy[s]["course"], accuracy[s].get("lm_eval")
        acc_rows.append([f"{s} ({course['items']} items)", f"{course['acc']:.4f}",
                         f"{peer['acc']:.4f}" if peer else "-", f"{course['acc_norm']:.4f}",
                         f"{peer['acc_norm']:.4f}" if peer else "-"])
    print_table(["split", "course acc", "lm-eval acc", "course acc_norm", "lm-eval acc_norm"], acc_rows)
    print(f"\none option at a time against batched: max |diff| "
          f"{checks['one_at_a_time_vs_batched_max_abs_diff']:.2e} nats")
    if "lm_eval_vs_course_max_abs_diff" in checks:
        same = checks["lm_eval_vs_course_max_abs_diff_same_tokens"]
        print(f"lm-eval against the course, per pair: max |diff| "
              f"{checks['lm_eval_vs_course_max_abs_diff']:.3g} nats over all {n_pairs} pairs, "
              f"{same:.2e} over the {n_pairs - checks['pairs_split_differs']} pairs with the same "
              f"tokens; {checks['pairs_split_differs']} pairs tokenised differently "
              f"({checks['hf_tokenizer_differs_from_course']} because the exported HF tokenizer "
              f"encodes the joined text differently, "
              f"{checks['course_tokenizer_merges_across_boundary']} from a merge across the boundary)")
    for threads, r in results.items():
        line = f"{threads} thread(s): batched {r['batched_over_one_at_a_time']:.2f}x one at a time"
        if "batched_over_lm_eval" in r:
            line += f", {r['batched_over_lm_eval']:.2f}x lm-eval"
        print(line)
    for name, reason in errors.items():
        print(f"{name} did not run: {reason}")

    summary = {"bench": "evaluation_scoring", "config": {
        "checkpoint": os.path.relpath(args.checkpoint.resolve(), ROOT),
        "n_layer": model.config.n_layer, "n_embd": model.config.n_embd,
        "block_size": model.config.block_size, "vocab_size": model.config.vocab_size,
        "items": {s: len(by_split[s]) for s in SPLITS}, "pairs": n_pairs,
        "lm_eval_batch_size": args.batch_size, "lm_eval_dtype": "float32"},
        "accuracy": accuracy, "checks": {k: v for k, v in checks.items() if k != "differing_pairs"},
        "threads": results, "lm_eval_errors": errors}
    details = {"repeats": args.repeats, "runs_seconds": runs,
               "differing_pairs": checks.get("differing_pairs"),
               "load_average_1_5_15_min": {"start": load_before,
                                           "end": [round(x, 2) for x in os.getloadavg()]},
               "simple_evaluate_seconds": round(simple["seconds"], 2) if simple else None,
               "machine": machine_info(["tinygpt", "torch", "transformers", "lm_eval",
                                        "datasets", "tokenizers"])}
    report("evaluation_scoring", summary, details)


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
