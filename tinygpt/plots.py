"""Figures for the book, drawn with matplotlib from data the pages compute (infrastructure).

``pipeline_map`` draws the course's fifteen steps; the others draw one chapter's
figures (chapter 1: the filter funnel, the LSH S-curve and the benchmark's stage times; chapter 2: bytes per token;
chapter 3: loss curves, the learning-rate schedule, attention maps, the scaling fit;
chapter 4: the loss mask over a chat's tokens, packed rows, the preference and RL
training curves; chapter 5: pass@k against k; chapter 6: the quantisation grid over a
weight histogram, bits against perplexity; chapter 7: a token bucket over a burst; chapter 9: the chunk cache's hit rate, encoder
speeds; chapter 10: the KV cache as a tensor, time to first token against prompt length; chapter 11: what each sampling filter keeps; chapter 12: block tables of a paged cache, a timeline of continuous batching).
Each returns the figure so a page can show it.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

STEPS = [
    "Data\ncuration", "Tokenizer\ntraining", "Pre-\ntraining", "Post-\ntraining", "Evaluation",
    "Deployment\nprep", "API\ngateway", "Prompt\nassembly", "Tokeni-\nzation", "Prefill",
    "Sampling", "Decode\nloop", "Tool\nuse", "Extended\nthinking", "Response\ncomplete",
]


def _finish(fig, ax, xlabel: str, ylabel: str, log_grid: bool = False, legend: bool = True):
    """Axis labels, a light grid (minor lines too on log axes), the legend; tight layout."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both" if log_grid else "major", alpha=0.3)
    if legend:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def pipeline_map(built: set[int] = frozenset()):
    """The fifteen steps as two rows of boxes (building, serving); ``built`` are filled."""
    fig, ax = plt.subplots(figsize=(11, 3.4))
    rows = [(0, "I. Building the model", range(0, 6)), (1, "II. Serving a prompt", range(6, 15))]
    for row, label, steps in rows:
        y = 1.6 - 1.5 * row
        ax.text(-0.1, y + 0.95, label, fontsize=11, fontweight="bold")
        for k, step in enumerate(steps):
            x = k * 1.25
            done = step + 1 in built
            ax.add_patch(FancyBboxPatch((x, y), 1.05, 0.8, boxstyle="round,pad=0.03",
                                        facecolor="#2b6cb0" if done else "#edf2f7",
                                        edgecolor="#2b6cb0", linewidth=1.2))
            ax.text(x + 0.525, y + 0.4, f"{step + 1}\n{STEPS[step]}", ha="center", va="center",
                    fontsize=8, color="white" if done else "#1a202c")
            if k < len(steps) - 1:
                ax.annotate("", (x + 1.23, y + 0.4), (x + 1.07, y + 0.4),
                            arrowprops={"arrowstyle": "->", "color": "#4a5568"})
    ax.annotate("", (0.5, 0.95), (6.75, 1.58), arrowprops={
        "arrowstyle": "->", "color": "#4a5568", "connectionstyle": "arc3,rad=-0.2"})
    ax.text(6.9, 1.15, "checkpoint → server", fontsize=8, color="#4a5568")
    ax.set_xlim(-0.2, 11.3)
    ax.set_ylim(-0.05, 2.75)
    ax.axis("off")
    fig.tight_layout()
    return fig


def bytes_per_token(sizes: list[int], ours: list[float], references: dict[str, tuple[int, float]]):
    """Bytes per token against vocabulary size, with real tokenizers as labelled points."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(sizes, ours, "o-", color="#2b6cb0", label="course tokenizer (trained here)")
    for name, (size, value) in references.items():
        ax.plot([size], [value], "s", markersize=8, label=f"{name} ({size:,} tokens)")
    ax.set_xscale("log", base=2)
    return _finish(fig, ax, "vocabulary size (tokens)", "bytes per token (held-out text)",
                   log_grid=True)


def funnel(report: list[dict], start: int):
    """The filter funnel of chapter 1: documents left after each pipeline step."""
    names = ["crawl"] + [row["step"] for row in report]
    kept = [start] + [row["kept"] for row in report]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    bars = ax.barh(names[::-1], kept[::-1], color="#2b6cb0")
    for bar, value in zip(bars, kept[::-1]):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:,}",
                va="center", fontsize=8)
    ax.set_xlabel("documents left")
    ax.set_xlim(0, start * 1.15)
    fig.tight_layout()
    return fig


def stage_times(seconds: dict[str, dict[str, float]], labels: dict[str, str]):
    """Chapter 1's benchmark: seconds per stage (stacked) for each method, fastest on top."""
    stages = [s for s in next(iter(seconds.values())) if s != "total"]
    order = sorted(seconds, key=lambda m: -seconds[m]["total"])
    fig, ax = plt.subplots(figsize=(7, 2.6))
    left = [0.0] * len(order)
    for stage, color in zip(stages, ("#2b6cb0", "#dd6b20", "#38a169", "#805ad5")):
        widths = [seconds[m][stage] for m in order]
        ax.barh([labels.get(m, m) for m in order], widths, left=left, color=color,
                label={"lsh": "LSH banding"}.get(stage, stage))
        left = [a + b for a, b in zip(left, widths)]
    for y, m in enumerate(order):
        ax.text(left[y], y, f" {seconds[m]['total']:.2f} s", va="center", fontsize=8)
    ax.set_xlim(0, max(left) * 1.18)
    return _finish(fig, ax, "seconds (10,000 pages)", "")


def s_curve(bands: int, rows: int, measured: list[tuple[float, float, int]]):
    """LSH's candidate probability 1-(1-s^r)^b, with measured rates (similarity, rate, pairs)."""
    s = [i / 200 for i in range(201)]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(s, [1 - (1 - x ** rows) ** bands for x in s], color="#2b6cb0",
            label=f"1-(1-s^{rows})^{bands}")
    if measured:
        xs, ys, ns = zip(*measured)
        ax.scatter(xs, ys, s=[12 + 2 * n ** 0.5 for n in ns], color="#dd6b20", zorder=3,
                   label="measured on crawl pairs (size: pairs per bin)")
    ax.axvline((1 / bands) ** (1 / rows), color="#a0aec0", linestyle="--", linewidth=1)
    ax.set_xlabel("Jaccard similarity of 5-gram shingle sets")
    ax.set_ylabel("P(candidate pair)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _smooth(values: list[float], width: int = 25) -> list[float]:
    """A trailing moving average (the first points average what there is)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - width] if i >= width else 0.0)
        out.append(total / min(i + 1, width))
    return out


def loss_curves(runs: dict[str, dict], baseline: float | None = None):
    """Chapter 3: training loss (smoothed) and validation loss against tokens seen, per run."""
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for i, (label, run) in enumerate(runs.items()):
        per_step = run["tokens_per_step"]
        steps = range(1, len(run["train_loss"]) + 1)
        ax.plot([s * per_step for s in steps], _smooth(run["train_loss"]), color=f"C{i}",
                alpha=0.5, lw=1, label=f"{label}: training (moving average)")
        ax.plot([e["step"] * per_step for e in run["evals"]], [e["val"] for e in run["evals"]],
                "o-", color=f"C{i}", ms=4, label=f"{label}: validation")
    if baseline is not None:
        ax.axhline(baseline, ls="--", color="#4a5568", lw=1, label="unigram baseline")
    return _finish(fig, ax, "tokens seen", "loss (nats per token)")


def lr_schedule(lrs: list[float], warmup_steps: int):
    """Chapter 3: the learning rate at every step, warm-up marked."""
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.plot(range(len(lrs)), lrs, color="#2b6cb0")
    ax.axvline(warmup_steps, ls=":", color="#4a5568", lw=1)
    ax.text(warmup_steps, max(lrs) * 0.5, " end of warm-up", fontsize=8, color="#4a5568")
    return _finish(fig, ax, "step", "learning rate", legend=False)


def attention_map(tokens: list[str], weights, title: str):
    """Chapter 3: one head's attention weights; row = the token attending, column = attended."""
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    image = ax.imshow(weights, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(tokens)), tokens, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(tokens)), tokens, fontsize=8)
    ax.set_xlabel("attends to (key)")
    ax.set_ylabel("token (query)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def scaling(params: list[int], losses: list[float], fitted: tuple[float, float, float],
            chinchilla_alpha: float):
    """Chapter 3: validation loss against non-embedding parameters, with the fitted power law
    ``E + A / N**alpha`` (``fitted`` = (E, A, alpha)) and Chinchilla's exponent for comparison."""
    e, a, alpha = fitted
    fig, ax = plt.subplots(figsize=(6.5, 4))
    lo, hi = min(params) / 1.5, max(params) * 1.5
    grid = [lo * (hi / lo) ** (i / 99) for i in range(100)]
    ax.plot(params, losses, "o", color="#2b6cb0", ms=7, label="measured (same token budget)")
    ax.plot(grid, [e + a / n ** alpha for n in grid], color="#2b6cb0",
            label=f"fit: {e:.2f} + {a:.3g} / N^{alpha:.2f}")
    anchor = params[-1]
    scale = (losses[-1] - e) * anchor ** chinchilla_alpha
    ax.plot(grid, [e + scale / n ** chinchilla_alpha for n in grid], ls="--", color="#c05621",
            label=f"exponent {chinchilla_alpha} (Chinchilla's), through the largest point")
    ax.set_xscale("log")
    return _finish(fig, ax, "non-embedding parameters N", "validation loss", log_grid=True)


def loss_mask(pieces: list[str], trained: list[bool], roles: list[str], per_line: int = 12):
    """Chapter 4: a chat's tokens in reading order, those the loss counts filled in."""
    lines = (len(pieces) + per_line - 1) // per_line
    fig, ax = plt.subplots(figsize=(9, 0.55 * lines + 0.6))
    for i, (piece, on, role) in enumerate(zip(pieces, trained, roles)):
        x, y = i % per_line, -(i // per_line)
        ax.add_patch(FancyBboxPatch((x + 0.04, y - 0.38), 0.92, 0.76, boxstyle="round,pad=0.02",
                                    facecolor="#2b7bba" if on else "#eeeeee",
                                    edgecolor="#2b7bba" if role == "assistant" else "#999999"))
        ax.text(x + 0.5, y, piece.replace("\n", "\\n"), ha="center", va="center", fontsize=6.5,
                color="white" if on else "black")
    ax.set_xlim(0, per_line)
    ax.set_ylim(-lines + 0.5, 0.6)
    ax.axis("off")
    ax.set_title("blue: tokens the SFT loss counts (the assistant's answer and its <|end|>)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def packed_rows(segments, title: str):
    """Chapter 4: which example each position of each packed row holds (white: padding)."""
    import numpy as np

    seg = np.asarray(segments, dtype=float)
    shown = np.where(seg < 0, np.nan, seg % 10)
    fig, ax = plt.subplots(figsize=(9, 0.3 * seg.shape[0] + 1.0))
    cmap = plt.get_cmap("tab10").copy()
    cmap.set_bad("white")
    ax.imshow(shown, cmap=cmap, vmin=0, vmax=9, aspect="auto", interpolation="nearest")
    ax.set_xlabel("position in the row")
    ax.set_ylabel("row")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def preference_curves(reward: dict, dpo: dict):
    """Chapter 4: the reward model's loss and batch accuracy; DPO's log-probabilities of the
    chosen and rejected answers, and its implicit-reward margin, step by step."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    steps = range(1, len(reward["losses"]) + 1)
    left.plot(steps, _smooth(reward["losses"], 10), label="Bradley-Terry loss")
    left.plot(steps, _smooth(reward["accuracy"], 10), label="pairwise accuracy (batch)")
    left.set_title("reward model", fontsize=9)
    _finish(fig, left, "step", "loss / accuracy")
    steps = range(1, len(dpo["losses"]) + 1)
    right.plot(steps, _smooth(dpo["chosen_logp"], 10), label="log p(chosen)")
    right.plot(steps, _smooth(dpo["rejected_logp"], 10), label="log p(rejected)")
    right.set_title("DPO: the policy's summed log-probabilities", fontsize=9)
    twin = right.twinx()
    twin.plot(steps, _smooth(dpo["margin"], 10), color="grey", linestyle="--",
              label="reward margin (right axis)")
    twin.set_ylabel("implicit-reward margin")
    twin.legend(fontsize=8, loc="center right")
    return _finish(fig, right, "step", "log-probability")


def grpo_curves(history: dict):
    """Chapter 4: GRPO's mean reward of the sampled completions, and the KL to the reference."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    steps = range(1, len(history["reward"]) + 1)
    ax.plot(steps, history["reward"], alpha=0.3, color="C0")
    ax.plot(steps, _smooth(history["reward"], 10), color="C0", label="mean reward of the samples")
    ax.plot(steps, _smooth(history["informative"], 10), color="C2",
            label="share of groups with a spread (that teach)")
    twin = ax.twinx()
    twin.plot(steps, history["kl"], color="grey", linestyle="--", label="KL to the reference (right)")
    twin.set_ylabel("KL per token")
    twin.legend(fontsize=8, loc="center right")
    return _finish(fig, ax, "step", "reward / share")


def quantisation_grid(weights, int8_levels, int4_levels, title: str):
    """Chapter 6: a histogram of real weights with the values int8 and int4 can store."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 4.2), sharex=True)
    names = ("int8: 255 levels (every 8th drawn), one scale per row",
             "int4: 16 levels, one scale per group (here the whole row)")
    for ax, levels, name in ((top, int8_levels, names[0]), (bottom, int4_levels, names[1])):
        ax.hist(weights, bins=80, color="#a0aec0")
        for level in levels:
            ax.axvline(level, color="#c05621", lw=0.6, alpha=0.7)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("weights")
    top.text(0.01, 0.85, title, transform=top.transAxes, fontsize=8, color="#4a5568")
    return _finish(fig, bottom, "weight value", "weights", legend=False)


def bits_vs_perplexity(rows: list[dict]):
    """Chapter 6: validation perplexity against bits per linear weight, a point per scheme."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for row in rows:
        ax.plot(row["linear_bits"], row["perplexity"], "o", color="#2b6cb0")
        ax.annotate(row["scheme"], (row["linear_bits"], row["perplexity"]), fontsize=8,
                    textcoords="offset points", xytext=(5, 4))
    ax.set_xscale("log", base=2)
    return _finish(fig, ax, "bits per weight of the linear layers (log scale)",
                   "validation perplexity", log_grid=True, legend=False)


def pass_at_k_curves(n: int, correct: list[int], unbiased, with_replacement):
    """Chapter 5: pass@k against k for n samples with c correct, the unbiased estimator
    (solid) beside the with-replacement formula 1 - (1 - c/n)^k (dashed)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ks = range(1, n + 1)
    for i, c in enumerate(correct):
        ax.plot(ks, [unbiased(n, c, k) for k in ks], color=f"C{i}", label=f"c = {c} of {n}")
        ax.plot(ks, [with_replacement(n, c, k) for k in ks], color=f"C{i}", ls="--", lw=1)
    ax.text(0.98, 0.05, "dashed: 1 - (1 - c/n)^k", transform=ax.transAxes, ha="right",
            fontsize=8, color="#4a5568")
    return _finish(fig, ax, "k (answers drawn)", "pass@k")


def report_card(card: dict, metrics: list[tuple[str, str, bool]]):
    """Chapter 5: every accuracy of a report card with its interval, a bar per checkpoint."""
    rows = [(key, label) for key, label, _ in metrics if key != "bits_per_byte"]
    names = card["checkpoints"]
    fig, ax = plt.subplots(figsize=(7.0, 0.45 * len(rows) * len(names) + 1.0))
    height = 0.8 / len(names)
    for i, name in enumerate(names):
        got = [card["metrics"][name][key] for key, _ in rows]
        y = [r + i * height for r in range(len(rows))]
        ax.barh(y, [100 * m["mean"] for m in got], height, color=f"C{i}", label=name,
                xerr=[[100 * (m["mean"] - m["low"]) for m in got],
                      [100 * (m["high"] - m["mean"]) for m in got]], capsize=2)
    ax.set_yticks([r + 0.4 - height / 2 for r in range(len(rows))],
                  [label.replace("pass@k", f"pass@{card['config']['k']}") for _, label in rows],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    return _finish(fig, ax, f"% of items ({round(100 * card['config']['level'])} % interval)", "")


def kv_cache(starts: list[int], end: int, max_len: int, n_layer: int, kv_heads: int,
             tokens: list[list[str]]):
    """Chapter 10: one layer's keys in a left-padded cache, one row per request: padding
    (grey) before the row's first token, its tokens up to slot ``end``, then free slots;
    the other layers and kv heads drawn behind it."""
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(starts) + 1.4))
    for depth in range(min(n_layer * kv_heads, 4) - 1, 0, -1):  # the tensor's other slices
        ax.add_patch(plt.Rectangle((0.25 * depth, 0.25 * depth), max_len, len(starts),
                                   facecolor="#edf2f7", edgecolor="#a0aec0", lw=0.8))
    for row, (start, words) in enumerate(zip(starts, tokens)):
        y = len(starts) - 1 - row
        for slot in range(max_len):
            colour = "#e2e8f0" if slot < start else "#90cdf4" if slot < end else "white"
            ax.add_patch(plt.Rectangle((slot, y), 1, 1, facecolor=colour, edgecolor="#4a5568", lw=0.6))
            if start <= slot < end and slot - start < len(words):
                word = words[slot - start]
                ax.text(slot + 0.5, y + 0.5, word, ha="center", va="center", fontsize=6.5,
                        rotation=90 if len(word) > 3 else 0)
        ax.text(-0.3, y + 0.5, f"row {row}: start {start}", ha="right", va="center", fontsize=8)
    ax.axvline(end, color="#c05621", lw=1.2)
    ax.text(end, len(starts) + 0.15, " end", color="#c05621", fontsize=8)
    ax.set_xlim(-4.5, max_len + 1.2)
    ax.set_ylim(-0.6, len(starts) + 1.1)
    ax.set_xticks([i + 0.5 for i in range(0, max_len, 2)], [str(i) for i in range(0, max_len, 2)],
                  fontsize=7)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"keys[layer] of a cache (n_layer={n_layer}, batch={len(starts)}, "
                 f"kv_heads={kv_heads}, max_len={max_len}, head_dim behind each slot)", fontsize=9)
    ax.set_xlabel("slot")
    fig.tight_layout()
    return fig


def ttft_curve(lengths: list[int], measured: dict[str, list[float]], fitted: list[float]):
    """Chapter 10: time to first token (ms) against prompt length, a line per system, and
    the fit a + b n + c n^2 of the first one (dotted), split into its linear and
    quadratic parts (dashed)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for i, (name, ms) in enumerate(measured.items()):
        ax.plot(lengths, ms, "o-", color=f"C{i}", label=name, lw=1.2, ms=4)
    a, b, c = fitted
    grid = range(0, max(lengths) + 1, 16)
    ax.plot(grid, [a + b * n + c * n * n for n in grid], ":", color="C0", label="fit a + bn + cn²")
    ax.plot(grid, [a + b * n for n in grid], "--", color="#718096", lw=1, label="a + bn (weights)")
    ax.plot(grid, [c * n * n for n in grid], "--", color="#c05621", lw=1, label="cn² (attention)")
    return _finish(fig, ax, "prompt length n (tokens)", "time to first token (ms)")


def cache_hit_rate(capacities: list[int], rates: list[float]):
    """Chapter 9: the chunk cache's hit rate on unseen text against its capacity."""
    fig, ax = plt.subplots(figsize=(6, 2.8))
    ax.semilogx(capacities, [100 * r for r in rates], "o-", color="#2b6cb0", base=2)
    ax.set_ylim(0, 100)
    return _finish(fig, ax, "cache capacity (pre-tokens)", "hit rate (%)", log_grid=True, legend=False)


def encoder_speeds(mb_per_s: dict[str, float], labels: dict[str, str]):
    """Chapter 9's benchmark: MB/s of each encoder, tiktoken's bars in grey."""
    names = sorted(mb_per_s, key=mb_per_s.get)
    fig, ax = plt.subplots(figsize=(7, 2.8))
    colors = ["#a0aec0" if n.startswith("tiktoken") else "#2b6cb0" for n in names]
    ax.barh([labels.get(n, n) for n in names], [mb_per_s[n] for n in names], color=colors)
    for y, n in enumerate(names):
        ax.text(mb_per_s[n], y, f" {mb_per_s[n]:.1f}", va="center", fontsize=8)
    ax.set_xlim(0, max(mb_per_s.values()) * 1.15)
    return _finish(fig, ax, "MB/s (one process)", "", legend=False)


def filter_panels(tokens: list[str], probs: list[float], kept: dict[str, list[bool]]):
    """Chapter 11: one next-token distribution (the best tokens, most likely first), once
    per filter, the tokens each filter keeps in colour and the ones it removes in grey."""
    fig, axes = plt.subplots(1, len(kept), figsize=(2.6 * len(kept), 3.4), sharey=True)
    for ax, (name, keep) in zip(axes, kept.items()):
        ax.barh(range(len(tokens)), probs, color=["#2b6cb0" if k else "#cbd5e0" for k in keep])
        ax.set_title(f"{name}: {sum(keep)} kept", fontsize=9)
        ax.invert_yaxis()
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_xlabel("probability")
    axes[0].set_yticks(range(len(tokens)), [repr(t) for t in tokens], fontsize=7)
    fig.tight_layout()
    return fig


def gateway_bucket(times: list[float], levels: list[float], arrivals: list[tuple[float, bool]],
                   capacity: float):
    """Chapter 7: a token bucket's level over a simulated burst, each arrival marked as
    admitted (blue) or refused (red) at the level it found."""
    fig, ax = plt.subplots(figsize=(7, 2.8))
    ax.step(times, levels, where="post", color="#2b6cb0", label="tokens in the bucket")
    ax.axhline(capacity, color="#a0aec0", linestyle="--", linewidth=1, label=f"capacity {capacity:g}")
    for admitted in (True, False):
        xs = [t for t, ok in arrivals if ok == admitted]
        ax.plot(xs, [-0.4 if admitted else -0.8] * len(xs), "|", markersize=9,
                color="#2b6cb0" if admitted else "#c53030",
                label="admitted" if admitted else "refused (429)")
    ax.set_ylim(-1.2, capacity * 1.15)
    return _finish(fig, ax, "time (s)", "tokens")


def block_tables(tables: dict, block_size: int, n_blocks: int, lengths: dict):
    """Chapter 12: a paged cache's pool of blocks, each coloured by the request that owns
    it (white when free) with its used slots filled in, and under it each request's block
    table: the blocks that hold its tokens, in order, wherever they lie in the pool."""
    colours = ["#90cdf4", "#fbd38d", "#9ae6b4", "#feb2b2", "#d6bcfa", "#fbb6ce", "#81e6d9", "#e2e8f0"]
    owner = {block: rid for rid, table in tables.items() for block in table}
    colour = {rid: colours[i % len(colours)] for i, rid in enumerate(tables)}
    per_row = min(n_blocks, 16)
    pool_rows = -(-n_blocks // per_row)
    height = pool_rows + len(tables) + 1.5
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * height + 1))
    used = {}  # slots used in each block: full ones, then the last one's part
    for rid, table in tables.items():
        for i, block in enumerate(table):
            used[block] = max(0, min(block_size, lengths.get(rid, 0) - i * block_size))
    for block in range(n_blocks):
        x, y = block % per_row, height - 1 - block // per_row
        rid = owner.get(block)
        ax.add_patch(plt.Rectangle((x, y), 0.92, 0.8, facecolor="white", edgecolor="#4a5568", lw=0.7))
        if rid is not None:  # the owner's colour, pale where the block's slots are not used yet
            ax.add_patch(plt.Rectangle((x, y), 0.92, 0.8, facecolor=colour[rid], alpha=0.3,
                                       edgecolor="none"))
            ax.add_patch(plt.Rectangle((x, y), 0.92 * used[block] / block_size, 0.8,
                                       facecolor=colour[rid], edgecolor="none"))
        ax.text(x + 0.46, y + 0.4, str(block), ha="center", va="center", fontsize=7)
    ax.text(-0.3, height - 0.6, "pool", ha="right", va="center", fontsize=8)
    for row, (rid, table) in enumerate(tables.items()):
        y = height - pool_rows - 1.5 - row
        for i, block in enumerate(table):
            ax.add_patch(plt.Rectangle((i, y), 0.92, 0.8, facecolor=colour[rid], edgecolor="#4a5568", lw=0.7))
            ax.text(i + 0.46, y + 0.4, str(block), ha="center", va="center", fontsize=7)
        ax.text(-0.3, y + 0.4, f"{rid}: {lengths.get(rid, 0)} tokens", ha="right", va="center", fontsize=8)
    free = n_blocks - len(owner)
    ax.set_xlim(-4, max(per_row, max((len(t) for t in tables.values()), default=0)) + 0.2)
    ax.set_ylim(-0.2, height)
    ax.axis("off")
    ax.set_title(f"{n_blocks} blocks of {block_size} slots ({free} free) and each request's block table",
                 fontsize=9)
    fig.tight_layout()
    return fig


def batching_timeline(spans: dict[str, tuple[int, int, int]], capacity: int | None = None):
    """Chapter 12: continuous batching as a timeline, one line per request: waiting from
    its arrival (grey) and running from its first token to its last (coloured), and under
    it how many requests ran at each step."""
    fig, (ax, count) = plt.subplots(2, 1, figsize=(7.5, 0.28 * len(spans) + 2.4), sharex=True,
                                    gridspec_kw={"height_ratios": [3, 1]})
    last = max(end for _, _, end in spans.values())
    for row, (rid, (arrived, first, end)) in enumerate(spans.items()):
        ax.barh(row, first - arrived, left=arrived, color="#e2e8f0", height=0.7)
        ax.barh(row, end - first + 1, left=first, color=f"C{row % 10}", height=0.7)
    ax.set_yticks(range(len(spans)), list(spans), fontsize=7)
    ax.invert_yaxis()
    ax.set_title("grey: waiting; colour: running, one token per step", fontsize=9)
    running = [sum(first <= k <= end for _, first, end in spans.values()) for k in range(last + 1)]
    count.step(range(last + 1), running, where="mid", color="#2b6cb0")
    if capacity:
        count.axhline(capacity, color="#a0aec0", linestyle="--", linewidth=1)
    count.set_ylabel("running", fontsize=8)
    count.set_xlabel("step")
    fig.tight_layout()
    return fig
