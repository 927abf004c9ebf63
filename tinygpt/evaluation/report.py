"""The report card: chapter 5's metrics, with 95 % intervals, for one or more checkpoints.

Hand-written for chapter 5 over the graded ``metrics`` and ``stats``; the driver is
``python -m tinygpt.evaluate``. Every number is the mean of a per-item score, so each
gets a percentile bootstrap interval, and two checkpoints are compared item by item
with the paired bootstrap:

* held-out text: the validation split of the first checkpoint's training data, decoded
  and cut into pieces of about ``piece_bytes`` bytes; per piece, the NLL per token
  (perplexity is its exponential) and bits per byte, every checkpoint reading the same
  text with its own tokenizer;
* world QA: each fact's question asked in chapter 4's chat format, answered greedily,
  scored by exact match against the fact's sentence or its bare value (held-in facts
  are in the training text, held-out ones never are);
* multiple choice: ``choice_items`` scored per byte (lm-evaluation-harness's
  ``acc_norm``), held-in and held-out;
* pass@1 and pass@k on chapter 4's held-out verifiable tasks, from ``samples`` sampled
  answers per task;
* Bradley-Terry and Elo ratings from item-level games between the checkpoints (the one
  right where the other is wrong wins, a tie otherwise);
* contamination: the share of each split's fact sentences whose n-grams occur in the
  training corpus.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tinygpt.corpus import course_corpus
from tinygpt.evaluation.items import choice_items
from tinygpt.evaluation.metrics import exact_match, pass_at_k, pick_choice, text_metrics
from tinygpt.evaluation.stats import bootstrap_ci, bradley_terry, contamination, elo, paired_bootstrap
from tinygpt.posttraining.data import is_correct, sft_chats, verifiable_tasks
from tinygpt.posttraining.finetune import answer
from tinygpt.posttraining.rl import reply_text, sample_groups
from tinygpt.posttraining.template import encode_chat
from tinygpt.pretraining.checkpoint import read_checkpoint
from tinygpt.pretraining.model import GPT
from tinygpt.pretraining.trainer import checkpoint_data
from tinygpt.tokenizer import Tokenizer
from tinygpt.tokenizer.control import END
from tinygpt.world import build_world

# The report card's rows: key, label, and whether higher is better.
METRICS = [
    ("bits_per_byte", "bits per byte, held-out text", False),
    ("qa_held_in", "QA exact match, held-in facts", True),
    ("qa_held_out", "QA exact match, held-out facts", True),
    ("mc_held_in", "multiple choice (acc_norm), held-in", True),
    ("mc_held_out", "multiple choice (acc_norm), held-out", True),
    ("pass_at_1", "pass@1, held-out tasks", True),
    ("pass_at_k", "pass@k, held-out tasks", True),
]
BINARY = ("qa_held_in", "qa_held_out", "mc_held_in", "mc_held_out")  # items that make games


@dataclass(frozen=True)
class ReportConfig:
    """What the report card measures, and how its intervals are drawn."""

    pieces: int = 48              # pieces of held-out text
    piece_bytes: int = 2000
    samples: int = 10             # answers sampled per verifiable task (n of pass@k)
    k: int = 5
    temperature: float = 1.0
    max_new_tokens: int = 24
    ngram: int = 8                # contamination's n
    level: float = 0.95
    resamples: int = 1000
    seed: int = 0
    max_items: int | None = None  # the first items of each set only (a quick look)


def held_out_pieces(checkpoint: str | Path, pieces: int, piece_bytes: int) -> list[str]:
    """The first ``pieces`` pieces of the checkpoint's validation text, each cut at a
    space once it reaches ``piece_bytes`` UTF-8 bytes."""
    data = checkpoint_data(checkpoint)
    val = [int(t) for t in data.val[0][:pieces * piece_bytes]]  # a token is >= 1 byte
    text = data.tokenizer.decode(val)
    out, start = [], 0
    while len(out) < pieces and start < len(text):
        end = start + piece_bytes
        while end < len(text) and len(text[start:end].encode("utf-8")) < piece_bytes:
            end += 64
        cut = text.find(" ", end)
        cut = len(text) if cut < 0 else cut
        if text[start:cut].strip():
            out.append(text[start:cut])
        start = cut + 1
    if not out:
        raise ValueError(f"{checkpoint}: its validation split holds no text to evaluate on")
    return out


def training_corpus(checkpoint: str | Path) -> str:
    """The corpus text that the checkpoint's training config names."""
    _, meta = read_checkpoint(checkpoint, optimizer=False)
    return course_corpus((meta.get("train") or {}).get("corpus_bytes"))


def evaluation_sets(config: ReportConfig) -> dict[str, list]:
    """The card's item sets, built once for every checkpoint (``max_items`` of each)."""
    sets = {"qa_held_in": sft_chats("train"), "qa_held_out": sft_chats("held_out"),
            "mc_held_in": choice_items("held_in"), "mc_held_out": choice_items("held_out"),
            "tasks": verifiable_tasks("held_out")}
    return {key: items[:config.max_items] for key, items in sets.items()}


def _qa_scores(model: GPT, tokenizer: Tokenizer, chats: list, bar) -> list[float]:
    out = []
    for chat, fact in chats:
        reply = answer(model, tokenizer, [m for m in chat if m["role"] != "assistant"])
        out.append(exact_match(reply, [fact.sentence, fact.object]))
        bar.update()
    return out


def _mc_scores(model: GPT, tokenizer: Tokenizer, items: list, bar) -> list[float]:
    out = []
    for item in items:
        out.append(float(pick_choice(model, tokenizer, item.prompt, list(item.choices),
                                     normalize=True) == item.answer))
        bar.update()
    return out


def _pass_scores(model: GPT, tokenizer: Tokenizer, tasks: list, config: ReportConfig, bar
                 ) -> tuple[list[float], list[float]]:
    gen = torch.Generator().manual_seed(config.seed)
    end = tokenizer.special_tokens[END]
    at_1, at_k = [], []
    for start in range(0, len(tasks), 8):
        batch = tasks[start:start + 8]
        prompts = [encode_chat(tokenizer, t.prompt, generation_prompt=True).ids for t in batch]
        groups = sample_groups(model, prompts, config.samples, config.max_new_tokens,
                               config.temperature, end, gen)
        for task, group in zip(batch, groups):
            c = sum(is_correct(task, reply_text(tokenizer, g)) for g in group)
            at_1.append(pass_at_k(config.samples, c, 1))
            at_k.append(pass_at_k(config.samples, c, config.k))
        bar.update(len(batch))
    return at_1, at_k


def item_scores(model: GPT, tokenizer: Tokenizer, texts: list[str], sets: dict[str, list],
                config: ReportConfig, progress: bool = True, name: str = "") -> dict[str, list[float]]:
    """One score per item for every metric of the card (and NLL per token per piece)."""
    total = len(texts) + sum(len(items) for items in sets.values())
    with tqdm(total=total, desc=f"evaluating {name}", disable=not progress) as bar:
        nll, bpb = [], []
        for text in texts:
            m = text_metrics(model, tokenizer, [text])
            nll.append(m["nll"] / m["tokens"])
            bpb.append(m["bits_per_byte"])
            bar.update()
        scores = {"nll_per_token": nll, "bits_per_byte": bpb}
        for key in ("qa_held_in", "qa_held_out"):
            scores[key] = _qa_scores(model, tokenizer, sets[key], bar)
        for key in ("mc_held_in", "mc_held_out"):
            scores[key] = _mc_scores(model, tokenizer, sets[key], bar)
        scores["pass_at_1"], scores["pass_at_k"] = _pass_scores(model, tokenizer, sets["tasks"],
                                                                config, bar)
    return scores


def _interval(values: list[float], config: ReportConfig) -> dict:
    if not values:
        raise ValueError("an evaluation set is empty: nothing to report")
    mean, low, high = bootstrap_ci(values, config.level, config.resamples, config.seed)
    return {"mean": mean, "low": low, "high": high, "n": len(values)}


def _games(scores: list[dict[str, list[float]]]) -> list[tuple[int, int, float]]:
    games = []
    for key in BINARY:
        for i, j in itertools.combinations(range(len(scores)), 2):
            games += [(i, j, 0.5 if a == b else float(a > b))
                      for a, b in zip(scores[i][key], scores[j][key])]
    return games


def contamination_summary(corpus: str, n: int) -> dict:
    """Per split, how many fact sentences share an n-gram with ``corpus``, and the mean share."""
    world = build_world()
    out = {}
    for split, facts in (("held_in", world.training_facts()), ("held_out", world.held_out_facts())):
        shares = contamination([f.sentence for f in facts], [corpus], n)
        out[split] = {"items": len(shares), "contaminated": sum(s > 0 for s in shares),
                      "mean_overlap": sum(shares) / len(shares)}
    return out


def report_card(names: list[str], models: list[GPT], tokenizers: list[Tokenizer],
                texts: list[str], corpus: str, config: ReportConfig = ReportConfig(),
                progress: bool = True) -> dict:
    """The card as a dict: per checkpoint every metric's mean and interval, the paired
    differences of each later checkpoint against the first, ratings, contamination."""
    if config.k > config.samples:
        raise ValueError(f"pass@k needs k <= samples, got k={config.k}, samples={config.samples}")
    sets = evaluation_sets(config)
    scores = [item_scores(m, t, texts, sets, config, progress, n)
              for n, m, t in zip(names, models, tokenizers)]
    card = {"config": asdict(config), "checkpoints": names, "metrics": {}, "comparisons": [],
            "items": {key: len(scores[0][key]) for key, _, _ in METRICS}}
    for name, s in zip(names, scores):
        row = {key: _interval(s[key], config) for key, _, _ in METRICS}
        nll = _interval(s["nll_per_token"], config)
        row["perplexity"] = {k: math.exp(v) if k != "n" else v for k, v in nll.items()}
        card["metrics"][name] = row
    for (i, a), (j, b) in itertools.combinations(enumerate(names), 2):
        card["comparisons"].append({"a": a, "b": b, **{
            key: paired_bootstrap(scores[j][key], scores[i][key], config.level,
                                  config.resamples, config.seed)
            for key, _, _ in METRICS}})
    if len(names) > 1:
        games = _games(scores)
        theta = bradley_terry(games, len(names))
        card["ratings"] = {"games": len(games),
                           "bradley_terry": dict(zip(names, (1000 + 400 / math.log(10) * theta).tolist())),
                           "elo": dict(zip(names, elo(games, len(names)).tolist()))}
    card["contamination"] = contamination_summary(corpus, config.ngram)
    return card


def _cell(m: dict, digits: int, percent: bool) -> str:
    f = (lambda x: f"{100 * x:.{digits}f}") if percent else (lambda x: f"{x:.{digits}f}")
    return f"{f(m['mean'])} [{f(m['low'])}, {f(m['high'])}]"


def markdown(card: dict) -> str:
    """The card as Markdown tables: metrics, comparisons, ratings, contamination."""
    names, level = card["checkpoints"], round(100 * card["config"]["level"])
    k = card["config"]["k"]
    rows = [("perplexity", "perplexity, held-out text", 1, False)] + [
        (key, label.replace("pass@k", f"pass@{k}"), 3 if key == "bits_per_byte" else 1,
         key != "bits_per_byte") for key, label, _ in METRICS]
    lines = [f"| metric ({level} % interval) | items | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for key, label, digits, percent in rows:
        n = card["metrics"][names[0]][key]["n"]
        lines.append(f"| {label}{' (%)' if percent else ''} | {n} | " + " | ".join(
            _cell(card["metrics"][name][key], digits, percent) for name in names) + " |")
    for comp in card["comparisons"]:
        lines += ["", f"{comp['b']} minus {comp['a']}, paired bootstrap:", "",
                  "| metric | difference | interval | p |", "|---|---|---|---|"]
        for key, label, _ in METRICS:
            d = comp[key]
            scale = 1 if key == "bits_per_byte" else 100
            lines.append(f"| {label.replace('pass@k', f'pass@{k}')} | {scale * d['difference']:+.3g} "
                         f"| [{scale * d['low']:+.3g}, {scale * d['high']:+.3g}] "
                         f"| {d['p_value']:.3f} |")
    if "ratings" in card:
        r = card["ratings"]
        lines += ["", f"Ratings from {r['games']:,} item-level games (Elo scale):", "",
                  "| checkpoint | Bradley-Terry | Elo (in item order) |", "|---|---|---|"]
        lines += [f"| {n} | {r['bradley_terry'][n]:.0f} | {r['elo'][n]:.0f} |" for n in names]
    c = card["contamination"]
    lines += ["", f"Contamination ({card['config']['ngram']}-gram overlap of the fact sentences "
              "with the training corpus):", "", "| split | items | contaminated | mean overlap |",
              "|---|---|---|---|"]
    lines += [f"| {split} | {v['items']} | {v['contaminated']} | {v['mean_overlap']:.2f} |"
              for split, v in c.items()]
    return "\n".join(lines)
